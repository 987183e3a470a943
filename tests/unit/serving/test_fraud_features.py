"""The scorer's feature computation (pure): equal to the sequential replay every engine must equal, whatever the
store already shows, and the read-your-writes overlay."""

from __future__ import annotations

from typing import Any

import pytest

from slipstream.features.definitions.fraud import CUSTOMER_VIEW, FRAUD, TERMINAL_VIEW
from slipstream.features.windows import EntityState
from slipstream.serving.exceptions import InvalidRequestError
from slipstream.serving.fraud import compute_features, newest_known, normalize_transaction, stored_states
from slipstream.serving.recent import RecentEvents
from tests.fraud_reference import reference, small_fraud_streams

N30 = "CUSTOMER_ID_NB_TX_30DAY_WINDOW"
TERMINAL_7D = "TERMINAL_ID_NB_TX_7DAY_WINDOW"


@pytest.fixture(scope="module")
def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return small_fraud_streams(n_customers=30, n_terminals=60, days=45)


def _states_before(
    tx: list[dict[str, Any]], labels: list[dict[str, Any]], record: dict[str, Any], *, include_later: bool = False
) -> list[EntityState | None]:
    """What the engine's store would hold for the record's customer and terminal (bytes round trip included)."""
    t = record["event_time"]
    customer, terminal = EntityState(), EntityState()
    for r in tx:
        if r["transaction_id"] == record["transaction_id"] or (r["event_time"] > t and not include_later):
            continue
        if r["customer_id"] == record["customer_id"]:
            customer.apply(CUSTOMER_VIEW.source("transactions"), r, CUSTOMER_VIEW.reach_us, 0)
        if r["terminal_id"] == record["terminal_id"]:
            terminal.apply(TERMINAL_VIEW.source("transactions"), r, TERMINAL_VIEW.reach_us, 0)
    for r in labels:
        if r["terminal_id"] == record["terminal_id"] and (r["event_time"] <= t or include_later):
            terminal.apply(TERMINAL_VIEW.source("labels"), r, TERMINAL_VIEW.reach_us, 0)
    return [EntityState.from_bytes(customer.to_bytes()), EntityState.from_bytes(terminal.to_bytes())]


def test_features_equal_the_reference_replay(streams: Any) -> None:
    tx, labels = streams
    want = reference(tx, labels)
    for record in tx[-400::7]:
        values, freshness = compute_features(FRAUD, record, _states_before(tx, labels, record))
        for name, value in want[record["transaction_id"]].items():
            assert values[name] == pytest.approx(value, abs=1e-9), name
        assert [f.view for f in freshness] == ["customer_spending", "terminal_risk"]
        assert all(f.age_ms is None or f.age_ms >= 0 for f in freshness)


def test_a_store_that_already_shows_later_events_gives_the_same_features(streams: Any) -> None:
    """A scorer behind the engine: the store holds the event itself and later ones; windows end at the event."""
    tx, labels = streams
    want = reference(tx, labels)
    later_labels = [r for r in labels if r["event_time"] <= tx[-1]["event_time"]]
    for record in tx[-300:-100:11]:
        states = _states_before(tx, later_labels, record, include_later=True)
        states[0].apply(CUSTOMER_VIEW.source("transactions"), record, CUSTOMER_VIEW.reach_us, 0)  # type: ignore[union-attr]
        values, freshness = compute_features(FRAUD, record, states)
        for name in (
            "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
            "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
            "TERMINAL_ID_NB_TX_7DAY_WINDOW",
        ):
            assert values[name] == pytest.approx(want[record["transaction_id"]][name], abs=1e-9)
        assert freshness[0].newest_event_us is not None and freshness[0].newest_event_us <= record["event_time"]


def test_recent_events_fill_in_what_the_store_does_not_show_yet(streams: Any) -> None:
    tx, labels = streams
    want = reference(tx, labels)
    customer = tx[-1]["customer_id"]
    theirs = [r for r in tx if r["customer_id"] == customer][-4:]
    assert len(theirs) == 4
    stale_store = _states_before(tx, labels, theirs[0])  # the engine has not applied the last four yet
    recent = RecentEvents(horizon_s=60)
    for record in theirs:
        stored = [s.to_bytes() if s else None for s in stale_store]
        values, _ = compute_features(FRAUD, record, stored_states(FRAUD, record, stored, recent))
        assert (
            values["CUSTOMER_ID_NB_TX_30DAY_WINDOW"] == want[record["transaction_id"]]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]
        )
    without = compute_features(
        FRAUD, theirs[-1], [EntityState.from_bytes(s.to_bytes()) if s else None for s in stale_store]
    )
    assert (
        without[0]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]
        < want[theirs[-1]["transaction_id"]]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"]
    )


def test_kept_states_give_the_same_features_as_rebuilding_them(streams: Any) -> None:
    """The engine lags, then catches up part way: every score equals the reference whether the kept state was
    reused (the store unchanged) or rebuilt (the store changed), and a small cache evicts without changing any."""
    tx, labels = streams
    want = reference(tx, labels)
    customer = tx[-1]["customer_id"]
    theirs = [r for r in tx if r["customer_id"] == customer][-6:]
    for max_states in (50_000, 1):
        recent = RecentEvents(horizon_s=60, max_states=max_states)
        customer_store = _states_before(tx, labels, theirs[0])[0]
        for i, record in enumerate(theirs):
            if i == 3:  # the engine writes the first two of them
                customer_store = _states_before(tx, labels, theirs[2])[0]
            terminal_store = _states_before(tx, labels, record)[1]  # other cards' payments and labels: current
            store = [s.to_bytes() if s else None for s in (customer_store, terminal_store)]
            values, _ = compute_features(FRAUD, record, stored_states(FRAUD, record, store, recent))
            assert values == pytest.approx(want[record["transaction_id"]], rel=1e-12)
            again, _ = compute_features(FRAUD, record, stored_states(FRAUD, record, store, recent))
            assert again == values  # scored twice (a redelivery, or twice in one batch): the same features
        if max_states > 1:
            assert recent.reused > 0 and recent.rebuilt >= 3  # first sight of both keys, then the engine's write
        else:
            assert recent.reused == 0  # customer and terminal keys evict each other


def test_a_kept_state_is_rebuilt_when_the_store_changes() -> None:
    recent = RecentEvents(horizon_s=60)
    source = CUSTOMER_VIEW.source("transactions")
    first = recent.state(b"k", None, source)
    assert recent.state(b"k", None, source) is first and recent.reused == 1
    stored = EntityState()
    stored.apply(source, {"transaction_id": 1, "event_time": 5, "amount": 1.0, "terminal_id": 2}, 0, 0)
    again = recent.state(b"k", stored.to_bytes(), source)
    assert again is not first and recent.rebuilt == 2 and len(again.ring("transactions")) == 1


def test_recent_events_are_forgotten_once_confirmed_or_old() -> None:
    now = [0.0]
    recent = RecentEvents(horizon_s=10, clock=lambda: now[0])
    source = CUSTOMER_VIEW.source("transactions")
    record = {"transaction_id": 1, "event_time": 1_000, "customer_id": 5, "terminal_id": 9, "amount": 10.0}
    recent.remember(b"k", record)
    assert recent.merge(b"k", EntityState(), source) == 1 and len(recent) == 1  # store lags: added, kept
    confirmed = EntityState()
    confirmed.apply(source, record, 0, 0)
    assert recent.merge(b"k", confirmed, source) == 0 and len(recent) == 0 and recent.confirmed == 1
    recent.remember(b"k", {**record, "transaction_id": 2})
    now[0] = 11.0
    recent.remember(b"other", {**record, "transaction_id": 3})  # a sweep: the 11 s old event goes
    assert len(recent) == 1 and recent.expired == 1


def test_newest_known_ignores_events_after_the_time() -> None:
    state = EntityState()
    source = TERMINAL_VIEW.source("labels")
    for tid, (tx_time, known) in enumerate([(100, 900), (200, 300), (300, 2_000)]):
        state.apply(
            source,
            {"transaction_id": tid, "tx_event_time": tx_time, "event_time": known, "is_fraud": 0},
            0,
            0,
            prune=False,
        )
    assert newest_known(state, 1_000) == 900
    assert newest_known(state, 250) is None
    assert newest_known(EntityState(), 5) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": -1.0}, "amount must be a finite number >= 0, got -1.0"),
        ({"amount": float("nan")}, "amount must be a finite number >= 0, got nan"),
        ({"customer_id": "7"}, "customer_id must be a non-negative integer, got '7'"),
        ({"terminal_id": True}, "terminal_id must be a non-negative integer, got True"),
        ({"event_time": 1.5}, "event_time must be a datetime or epoch microseconds, got 1.5"),
    ],
)
def test_invalid_transactions_are_named(change: dict[str, Any], message: str) -> None:
    record = {"transaction_id": 1, "event_time": 10, "customer_id": 5, "terminal_id": 9, "amount": 10.0}
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_transaction({**record, **change})


def test_missing_fields_are_listed() -> None:
    with pytest.raises(InvalidRequestError, match=r"missing \['terminal_id', 'amount'\]"):
        normalize_transaction({"transaction_id": 1, "event_time": 10, "customer_id": 5})


def test_newest_known_bisects_rings_known_at_their_own_time_and_agrees_with_the_full_scan() -> None:
    state = EntityState()
    tx = TERMINAL_VIEW.source("transactions")
    labels = TERMINAL_VIEW.source("labels")
    for tid, at in enumerate([100, 400, 250, 700]):
        state.apply(tx, {"transaction_id": tid, "event_time": at, "amount": 1.0, "terminal_id": 3}, 0, 0, prune=False)
    state.apply(
        labels, {"transaction_id": 9, "tx_event_time": 100, "event_time": 650, "is_fraud": 1}, 0, 0, prune=False
    )
    later = TERMINAL_VIEW.known_by_topics
    assert later == {"labels"}
    for t in (50, 100, 399, 400, 640, 660, 699, 700, 10_000):
        assert newest_known(state, t, later) == newest_known(state, t), t
    assert newest_known(state, 660, later) == 650  # the label, known at 650, is newer than the 400 transaction
    assert newest_known(state, 50, later) is None
