"""``slipstream.features.offline`` equals a sequential replay through ``slipstream.features.windows``: hand-computed
cases, then random logs.

:func:`replay` is the reference (also used by ``tests/data/test_offline_fraud.py``): the log merged by known time
(other topics before the trigger, then id), every event known by ``t`` applied before any feature at ``t``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slipstream.features.base import (
    Agg,
    Aggregate,
    Entity,
    FeatureSet,
    FeatureView,
    Ratio,
    RequestFeature,
    SourceSpec,
    Where,
    Window,
)
from slipstream.features.definitions.fraud import FRAUD
from slipstream.features.definitions.reco import RECO
from slipstream.features.exceptions import DefinitionError, FeatureError
from slipstream.features.offline import OfflineFeatures, compute_offline, latest_view_rows, write_offline
from slipstream.features.windows import (
    EntityState,
    compute_view,
    derived_features,
    event_id_int,
    request_features,
    to_micros,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)  # a Friday
H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)
TOLERANCE = 1e-9


# ---- the reference ----------------------------------------------------------------------------------------------
def replay(feature_set: FeatureSet, events: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Feature vectors (``id``, ``t``, features) and view rows (keys, ``t``, features) from windows.py, in order."""
    trigger = feature_set.trigger
    specs = {s.topic: s for v in feature_set.views for s in v.sources}
    order = [t for t in dict.fromkeys(s.topic for v in feature_set.views for s in v.sources) if t != trigger]
    stream: list[tuple[int, int, int, str, dict[str, Any]]] = []
    for rank, topic in enumerate([*order, trigger]):
        spec = specs[topic]
        frame = events[topic].drop_duplicates(subset=[spec.id_field], keep="first")
        for record in cast(list[dict[str, Any]], frame.to_dict("records")):
            known = to_micros(record[spec.known_by or spec.time_field])
            stream.append((known, rank, event_id_int(record[spec.id_field]), topic, record))
    stream.sort(key=lambda e: e[:3])
    states: dict[str, dict[tuple[Any, ...], EntityState]] = {v.name: {} for v in feature_set.views}
    reads = {v.name: {s.topic for s in v.sources} for v in feature_set.views}
    reach = {v.name: v.reach_us for v in feature_set.views}
    vectors: list[dict[str, Any]] = []
    rows: dict[str, list[dict[str, Any]]] = {v.name: [] for v in feature_set.views}
    for t, group in itertools.groupby(stream, key=lambda e: e[0]):
        batch = list(group)
        for *_, topic, record in batch:
            for view in feature_set.views:
                if topic in reads[view.name]:
                    key = tuple(record[k] for k in view.entity.join_keys)
                    state = states[view.name].setdefault(key, EntityState())
                    state.apply(view.source(topic), record, reach[view.name], 0)
        for *_, topic, record in batch:
            is_trigger = topic == trigger
            tie = event_id_int(record[specs[trigger].id_field]) if is_trigger else None
            values = request_features(feature_set.request, record) if is_trigger else {}
            for view in feature_set.views:
                if not (topic in reads[view.name] or is_trigger):
                    continue
                key = tuple(record[k] for k in view.entity.join_keys)
                state = states[view.name].get(key, EntityState())
                got = compute_view(view, state, t, trigger if is_trigger else None, tie)
                if topic in reads[view.name]:
                    rows[view.name].append({**dict(zip(view.entity.join_keys, key, strict=True)), "t": t, **got})
                values |= got
            if is_trigger:
                values |= derived_features(feature_set, values)
                vectors.append({"id": record[specs[trigger].id_field], "t": t, **values})
    return pd.DataFrame(vectors), {name: pd.DataFrame(r) for name, r in rows.items()}


def assert_matches_replay(feature_set: FeatureSet, events: Mapping[str, pd.DataFrame]) -> OfflineFeatures:
    result = compute_offline(feature_set, events)
    vectors, rows = replay(feature_set, events)
    got = result.vectors
    id_field = next(s.id_field for v in feature_set.views for s in v.sources if s.topic == feature_set.trigger)
    assert got[id_field].tolist() == vectors["id"].tolist()
    assert (got["event_time"].to_numpy(dtype="datetime64[us]").view(np.int64) == vectors["t"].to_numpy()).all()
    for name in vectors.columns[2:]:
        np.testing.assert_allclose(got[name].to_numpy(), vectors[name].to_numpy(), rtol=0, atol=TOLERANCE, err_msg=name)
    for view in feature_set.views:
        mine, theirs = result.view_rows[view.name], rows[view.name]
        assert len(mine) == len(theirs), view.name
        if not len(theirs):
            continue
        stamps = mine["event_timestamp"].to_numpy(dtype="datetime64[us]").view(np.int64)
        assert (stamps == theirs["t"].to_numpy()).all(), view.name
        assert mine["created"].equals(mine["event_timestamp"])
        for key in view.entity.join_keys:
            assert mine[key].tolist() == theirs[key].tolist(), (view.name, key)
        for name in view.feature_names:
            np.testing.assert_allclose(
                mine[name].to_numpy(), theirs[name].to_numpy(), rtol=0, atol=TOLERANCE, err_msg=f"{view.name}.{name}"
            )
    return result


# ---- a small feature set for hand-computed cases ---------------------------------------------------------------------
CARD = Entity("card", ("card_id",), ("int64",))
PAYMENTS = SourceSpec("payments", id_field="payment_id", fields=("amount", "kind", "shop"))
REFUNDS = SourceSpec("refunds", time_field="paid_at", id_field="refund_id", known_by="event_time", fields=("amount",))


def card_set(*features: Aggregate | Ratio, sources: tuple[SourceSpec, ...] = (PAYMENTS, REFUNDS)) -> FeatureSet:
    view = FeatureView("card_view", CARD, sources, features)
    return FeatureSet("cards", "payments", (RequestFeature("AMOUNT", "field", "amount"),), (view,))


def payments(*rows: tuple[Any, ...], card: int = 1) -> pd.DataFrame:
    """(id, time after T0, amount[, kind, shop]) rows of one card."""
    full: list[tuple[Any, ...]] = [(*r, "a", 0)[:5] for r in rows]
    return pd.DataFrame(
        {
            "payment_id": pd.Series([r[0] for r in full], dtype="int64"),
            "event_time": pd.Series([T0 + r[1] for r in full], dtype="datetime64[us, UTC]"),
            "card_id": pd.Series([card] * len(full), dtype="int64"),
            "amount": pd.Series([r[2] for r in full], dtype="float64"),
            "kind": pd.Series([r[3] for r in full], dtype=object),
            "shop": pd.Series([r[4] for r in full], dtype="int64"),
        }
    )


def refunds(*rows: tuple[int, timedelta, timedelta, float], card: int = 1) -> pd.DataFrame:
    """(id, paid time after T0, known time after T0, amount) rows of one card."""
    return pd.DataFrame(
        {
            "refund_id": pd.Series([r[0] for r in rows], dtype="int64"),
            "paid_at": pd.Series([T0 + r[1] for r in rows], dtype="datetime64[us, UTC]"),
            "event_time": pd.Series([T0 + r[2] for r in rows], dtype="datetime64[us, UTC]"),
            "card_id": pd.Series([card] * len(rows), dtype="int64"),
            "amount": pd.Series([r[3] for r in rows], dtype="float64"),
        }
    )


NO_REFUNDS = refunds()


def column(result: OfflineFeatures, name: str) -> list[float]:
    return [float(v) for v in result.vectors[name]]


def test_window_excludes_t_minus_w_and_includes_t() -> None:
    fs = card_set(Aggregate("N", "payments", Agg.COUNT, Window(H)))
    log = payments((1, 0 * H, 1.0), (2, H, 1.0), (3, 2 * H - timedelta(microseconds=1), 1.0))
    result = assert_matches_replay(fs, {"payments": log, "refunds": NO_REFUNDS})
    assert column(result, "N") == [1.0, 1.0, 2.0]  # at 1h the event at 0 is out; at 2h-1us the one at 1h is in


def test_delay_window() -> None:
    fs = card_set(Aggregate("N", "payments", Agg.COUNT, Window(2 * H, delay=H)))  # (t - 3h, t - 1h]
    log = payments((1, 0 * H, 1.0), (2, H, 1.0), (3, 3 * H, 1.0), (4, 4 * H, 1.0))
    result = assert_matches_replay(fs, {"payments": log, "refunds": NO_REFUNDS})
    assert column(result, "N") == [0.0, 1.0, 1.0, 1.0]  # at 3h: (0, 2h] holds 1h, not 0; at 4h: (1h, 3h] holds 3h


def test_equal_times_count_up_to_the_event_by_id() -> None:
    fs = card_set(
        Aggregate("N", "payments", Agg.COUNT, Window(H)), Aggregate("S", "payments", Agg.SUM, Window(H), "amount")
    )
    log = payments((5, H, 10.0), (3, H, 1.0), (9, H, 100.0))
    result = assert_matches_replay(fs, {"payments": log, "refunds": NO_REFUNDS})
    assert result.vectors["payment_id"].tolist() == [3, 5, 9]
    assert column(result, "N") == [1.0, 2.0, 3.0]
    assert column(result, "S") == [1.0, 11.0, 111.0]


def test_known_by_counts_only_what_is_known() -> None:
    refund = Aggregate("R", "refunds", Agg.SUM, Window(10 * H), "amount")
    fs = card_set(refund, Aggregate("RN", "refunds", Agg.COUNT, Window(10 * H)))
    log = payments((1, 2 * H, 0.0), (2, 5 * H, 0.0), (3, 6 * H, 0.0))
    late = refunds((1, 1 * H, 5 * H, 7.0), (2, 2 * H, 6 * H + M, 3.0))  # delays vary: the general path
    result = assert_matches_replay(fs, {"payments": log, "refunds": late})
    assert column(result, "R") == [0.0, 7.0, 7.0]  # at 5h the first refund (paid 1h) is known; the second at 6h01
    rows = result.view_rows["card_view"]
    assert rows["R"].tolist() == [0.0, 7.0, 7.0, 7.0, 10.0]  # payment 2h, refund known 5h, 5h, 6h, refund 6h01
    constant = refunds((1, 1 * H, 4 * H, 7.0), (2, 2 * H, 5 * H, 3.0))  # 3h each: the fast path
    result = assert_matches_replay(fs, {"payments": log, "refunds": constant})
    assert column(result, "R") == [0.0, 10.0, 10.0]


def test_where_filters_and_every_aggregate() -> None:
    w = Window(3 * H)
    fs = card_set(
        Aggregate("N_A", "payments", Agg.COUNT, w, where=Where("kind", "a")),
        Aggregate("SUM", "payments", Agg.SUM, w, "amount"),
        Aggregate("MEAN", "payments", Agg.MEAN, w, "amount"),
        Aggregate("MIN", "payments", Agg.MIN, w, "amount"),
        Aggregate("MAX", "payments", Agg.MAX, w, "amount"),
        Aggregate("LAST_B", "payments", Agg.LAST, w, "amount", where=Where("kind", "b"), default=-1.0),
        Aggregate("SHOPS", "payments", Agg.DISTINCT_COUNT, w, "shop"),
        Aggregate("SINCE", "payments", Agg.TIME_SINCE_LAST, w, default=-1.0),
        sources=(PAYMENTS,),
    )
    log = payments((1, 0 * H, 4.0, "a", 7), (2, H, 2.0, "b", 8), (3, 2 * H, 6.0, "a", 7), (4, 4 * H, 1.0, "a", 9))
    result = assert_matches_replay(fs, {"payments": log})
    assert column(result, "N_A") == [1.0, 1.0, 2.0, 2.0]
    assert column(result, "SUM") == [4.0, 6.0, 12.0, 7.0]  # at 4h the window (1h, 4h] holds 3 and 4
    assert column(result, "MEAN") == [4.0, 3.0, 4.0, 3.5]
    assert column(result, "MIN") == [4.0, 2.0, 2.0, 1.0]
    assert column(result, "MAX") == [4.0, 4.0, 6.0, 6.0]
    assert column(result, "LAST_B") == [-1.0, 2.0, 2.0, -1.0]
    assert column(result, "SHOPS") == [1.0, 2.0, 2.0, 2.0]
    assert column(result, "SINCE") == [-1.0, 3600.0, 3600.0, 7200.0]  # the event itself is not "last"


def test_empty_windows_give_defaults_and_ratios_their_default() -> None:
    fs = card_set(
        Aggregate("N", "refunds", Agg.COUNT, Window(H)),
        Aggregate("S", "refunds", Agg.SUM, Window(H), "amount", default=-2.0),
        Aggregate("LO", "refunds", Agg.MIN, Window(H), "amount", default=-3.0),
        Ratio("PER", "S", "N", default=9.0),
    )
    result = assert_matches_replay(fs, {"payments": payments((1, H, 5.0)), "refunds": NO_REFUNDS})
    assert result.vectors[["N", "S", "LO", "PER"]].iloc[0].tolist() == [0.0, -2.0, -3.0, 9.0]


def test_duplicates_count_once_and_the_first_wins() -> None:
    fs = card_set(Aggregate("S", "payments", Agg.SUM, Window(D), "amount"), sources=(PAYMENTS,))
    log = payments((1, H, 5.0), (2, 2 * H, 1.0))
    replayed = pd.concat([log, payments((1, 3 * H, 500.0))], ignore_index=True)
    result = assert_matches_replay(fs, {"payments": replayed})
    assert column(result, "S") == [5.0, 6.0]
    assert len(result.view_rows["card_view"]) == 2


def test_text_ids_order_equal_times_like_the_rings() -> None:
    fs = card_set(Aggregate("N", "payments", Agg.COUNT, Window(H)), sources=(PAYMENTS,))
    log = payments((1, H, 1.0), (2, H, 1.0), (3, H, 1.0), (4, 2 * H, 1.0))
    log["payment_id"] = ["x", "y", "z", "w"]
    result = assert_matches_replay(fs, {"payments": log})
    ranked = sorted(["x", "y", "z"], key=event_id_int)
    assert result.vectors["payment_id"].tolist() == [*ranked, "w"]
    assert column(result, "N") == [1.0, 2.0, 3.0, 1.0]


def test_view_rows_latest_rows_and_files(tmp_path: Path) -> None:
    fs = card_set(Aggregate("RN", "refunds", Agg.COUNT, Window(D)), Aggregate("N", "payments", Agg.COUNT, Window(D)))
    log = pd.concat([payments((1, H, 1.0)), payments((2, 2 * H, 1.0), card=2)], ignore_index=True)
    back = refunds((1, 0 * H, 2 * H, 1.0), (2, 0 * H, 3 * H, 1.0), card=1)
    result = compute_offline(fs, {"payments": log, "refunds": back})
    rows = result.view_rows["card_view"]
    assert list(rows.columns) == ["card_id", "event_timestamp", "created", "RN", "N"]
    assert rows["card_id"].tolist() == [1, 1, 2, 1]  # known 1h, refund 2h before payment 2h, 3h
    latest = latest_view_rows(result.view_rows)["card_view"]
    assert latest[["card_id", "RN", "N"]].to_numpy().tolist() == [[2, 0.0, 1.0], [1, 2.0, 1.0]]

    paths = write_offline(result, tmp_path / "out")
    assert sorted(paths) == ["card_view", "feature_vectors"]
    schema = pq.read_schema(paths["card_view"])
    assert schema.field("card_id").type == pa.int64()
    assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("created").type == pa.timestamp("us", tz="UTC")
    assert schema.field("RN").type == pa.float64()
    pd.testing.assert_frame_equal(pd.read_parquet(paths["feature_vectors"]), result.vectors)


def test_bad_inputs_are_named() -> None:
    fs = card_set(Aggregate("N", "payments", Agg.COUNT, Window(H)))
    with pytest.raises(FeatureError, match="'refunds'"):
        compute_offline(fs, {"payments": payments((1, H, 1.0))})
    with pytest.raises(FeatureError, match=r"lack columns \['amount'\]"):
        compute_offline(fs, {"payments": payments((1, H, 1.0)).drop(columns="amount"), "refunds": NO_REFUNDS})
    naive = payments((1, H, 1.0))
    naive["event_time"] = naive["event_time"].dt.tz_localize(None)
    with pytest.raises(FeatureError, match="'event_time' must be tz-aware.*datetime64"):
        compute_offline(fs, {"payments": naive, "refunds": NO_REFUNDS})
    odd = SourceSpec("payments", time_field="booked_at", id_field="payment_id")
    with pytest.raises(DefinitionError, match="'booked_at'"):
        compute_offline(card_set(sources=(odd,)), {"payments": payments()})
    forgetful = SourceSpec("payments", id_field="payment_id", fields=("kind",))
    with pytest.raises(DefinitionError, match=r"'S' of view 'card_view' reads \['amount'\]"):
        compute_offline(
            card_set(Aggregate("S", "payments", Agg.SUM, Window(H), "amount"), sources=(forgetful,)),
            {"payments": payments()},
        )


# ---- random logs against the replay -----------------------------------------------------------------------------
def random_fraud(rng: np.random.Generator, n: int, delays: str) -> dict[str, pd.DataFrame]:
    """Coarse times (ties), a few customers and terminals, labels with constant or varying delays, replays."""
    times = T0 + pd.to_timedelta(np.sort(rng.integers(0, 40 * 24, n)) * 3600, unit="s")
    tx = pd.DataFrame(
        {
            "transaction_id": rng.permutation(n).astype(np.int64),
            "event_time": pd.Series(times, dtype="datetime64[us, UTC]"),
            "customer_id": rng.integers(0, 4, n).astype(np.int64),
            "terminal_id": rng.integers(0, 3, n).astype(np.int64),
            "amount": np.round(rng.lognormal(3, 2, n), 2),
        }
    )
    labelled = tx.sample(frac=0.8, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    days = np.full(len(labelled), 7) if delays == "constant" else rng.integers(0, 15, len(labelled))
    labels = pd.DataFrame(
        {
            "transaction_id": labelled["transaction_id"],
            "customer_id": labelled["customer_id"],
            "terminal_id": labelled["terminal_id"],
            "tx_event_time": labelled["event_time"],
            "event_time": labelled["event_time"] + pd.to_timedelta(days * 86_400, unit="s").to_numpy(),
            "is_fraud": rng.random(len(labelled)) < 0.3,
        }
    )
    again = tx.sample(n=5, random_state=1).assign(amount=1e6)
    return {"transactions": pd.concat([tx, again], ignore_index=True), "labels": labels}


def random_reco(rng: np.random.Generator, n: int) -> dict[str, pd.DataFrame]:
    minutes = np.sort(rng.integers(0, 10 * 24 * 60, n))
    item = rng.integers(0, 6, n).astype(np.int64)
    return {
        "interactions": pd.DataFrame(
            {
                "event_id": np.array([f"ev{i}" for i in rng.permutation(n)], dtype=object),
                "event_time": pd.Series(T0 + pd.to_timedelta(minutes * 60, unit="s"), dtype="datetime64[us, UTC]"),
                "user_id": rng.integers(0, 4, n).astype(np.int64),
                "item_id": item,
                "category_id": (item % 3).astype(np.int32),
                "action": np.array(["VIEW", "CLICK", "ADD_TO_CART"], dtype=object)[rng.integers(0, 3, n)],
            }
        )
    }


def kitchen_sink() -> FeatureSet:
    """Every aggregate kind, on the trigger's own source, on a known_by source, with and without delay and filters."""
    pay = (("P", "payments", w, d) for w, d in ((H, timedelta(0)), (3 * H, 30 * M)))
    ref = (("R", "refunds", w, d) for w, d in ((2 * H, timedelta(0)), (3 * H, H)))
    features: list[Aggregate | Ratio] = []
    for prefix, topic, w, d in itertools.chain(pay, ref):
        tag = f"{prefix}{int(w / M)}_{int(d / M)}"
        win = Window(w, d)
        features += [
            Aggregate(f"{tag}_N", topic, Agg.COUNT, win),
            Aggregate(f"{tag}_SUM", topic, Agg.SUM, win, "amount"),
            Aggregate(f"{tag}_MEAN", topic, Agg.MEAN, win, "amount", default=-1.0),
            Aggregate(f"{tag}_MIN", topic, Agg.MIN, win, "amount", default=-2.0),
            Aggregate(f"{tag}_MAX", topic, Agg.MAX, win, "amount"),
            Aggregate(f"{tag}_LAST", topic, Agg.LAST, win, "amount", default=-3.0),
            Aggregate(f"{tag}_SHOPS", topic, Agg.DISTINCT_COUNT, win, "shop"),
            Aggregate(f"{tag}_SINCE", topic, Agg.TIME_SINCE_LAST, win, default=-4.0),
        ]
    features += [
        Aggregate("PA_N", "payments", Agg.COUNT, Window(2 * H), where=Where("kind", "a")),
        Aggregate("PA_MAX", "payments", Agg.MAX, Window(2 * H), "amount", where=Where("kind", "a")),
        Aggregate("PA_SINCE", "payments", Agg.TIME_SINCE_LAST, Window(2 * H), where=Where("kind", "a")),
        Ratio("REFUND_SHARE", "R120_0_SUM", "P60_0_SUM", default=7.0),
    ]
    payments_spec = SourceSpec("payments", id_field="payment_id", fields=("amount", "kind", "shop"))
    refunds_spec = SourceSpec(
        "refunds", time_field="paid_at", id_field="refund_id", known_by="event_time", fields=("amount", "shop")
    )
    card = FeatureView("card_all", CARD, (payments_spec, refunds_spec), tuple(features))
    shop = FeatureView(  # the trigger is not a source: its events are queries, not rows
        "shop_refunds",
        Entity("shop", ("shop",), ("int32",)),
        (refunds_spec,),
        (Aggregate("SHOP_REFUNDS", "refunds", Agg.SUM, Window(4 * H), "amount"),),
    )
    return FeatureSet(
        "sink",
        "payments",
        (
            RequestFeature("AMOUNT", "field", "amount"),
            RequestFeature("NIGHT", "night"),
            RequestFeature("WE", "weekend"),
        ),
        (card, shop),
        derived=(Ratio("SHOP_PER_CARD", "SHOP_REFUNDS", "P60_0_N", default=-5.0),),
    )


def random_sink(rng: np.random.Generator, n: int, delays: str, text_ids: bool) -> dict[str, pd.DataFrame]:
    grid = rng.integers(0, 24 * 12, n) * 5 * 60_000_000 + rng.choice([0, 0, 0, 1, 999_999], n)  # 5-min grid
    pay = pd.DataFrame(
        {
            "payment_id": rng.permutation(n).astype(np.int64),
            "event_time": pd.Series(T0 + pd.to_timedelta(grid, unit="us"), dtype="datetime64[us, UTC]"),
            "card_id": rng.integers(0, 3, n).astype(np.int64),
            "amount": rng.uniform(-1000, 1000, n),
            "kind": np.array(["a", "b"], dtype=object)[rng.integers(0, 2, n)],
            "shop": rng.integers(0, 4, n).astype(np.int64),
        }
    )
    if text_ids:
        pay["payment_id"] = np.array([f"p{i}" for i in pay["payment_id"]], dtype=object)
    m = n // 2
    paid = rng.integers(0, 24 * 12, m) * 5 * 60_000_000
    delay = np.full(m, 45 * 60_000_000) if delays == "constant" else rng.integers(0, 4 * 12, m) * 5 * 60_000_000
    refs = pd.DataFrame(
        {
            "refund_id": rng.permutation(m).astype(np.int64),
            "paid_at": pd.Series(T0 + pd.to_timedelta(paid, unit="us"), dtype="datetime64[us, UTC]"),
            "event_time": pd.Series(T0 + pd.to_timedelta(paid + delay, unit="us"), dtype="datetime64[us, UTC]"),
            "card_id": rng.integers(0, 3, m).astype(np.int64),
            "amount": np.round(rng.uniform(0, 100, m), 2),
            "shop": rng.integers(0, 4, m).astype(np.int64),
        }
    )
    return {"payments": pay, "refunds": refs}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("delays", ["constant", "varying"])
def test_fraud_set_matches_replay(seed: int, delays: str) -> None:
    assert_matches_replay(FRAUD, random_fraud(np.random.default_rng(seed), 300, delays))


@pytest.mark.parametrize("seed", range(6))
def test_reco_set_matches_replay(seed: int) -> None:
    assert_matches_replay(RECO, random_reco(np.random.default_rng(seed), 400))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delays", ["constant", "varying"])
@pytest.mark.parametrize("text_ids", [False, True])
def test_every_aggregate_matches_replay(seed: int, delays: str, text_ids: bool) -> None:
    assert_matches_replay(kitchen_sink(), random_sink(np.random.default_rng(seed), 250, delays, text_ids))


def test_small_chunks_and_rank_keys_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The general path in many chunks, and composite keys from time ranks instead of offsets."""
    monkeypatch.setattr("slipstream.features.offline.aggregate.CHUNK", 7)
    monkeypatch.setattr("slipstream.features.offline.index.KEY_LIMIT", 1 << 20)
    monkeypatch.setattr("slipstream.features.offline.view.KEY_LIMIT", 1 << 20)
    assert_matches_replay(kitchen_sink(), random_sink(np.random.default_rng(99), 200, "varying", True))
    assert_matches_replay(FRAUD, random_fraud(np.random.default_rng(99), 200, "constant"))


def test_empty_logs() -> None:
    events = random_fraud(np.random.default_rng(0), 10, "constant")
    result = compute_offline(FRAUD, {k: v.iloc[:0] for k, v in events.items()})
    assert result.vectors.empty
    assert list(result.vectors.columns)[:4] == ["transaction_id", "customer_id", "terminal_id", "event_time"]
    assert all(frame.empty for frame in result.view_rows.values())
