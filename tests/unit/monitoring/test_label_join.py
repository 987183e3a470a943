"""The label join as pure logic: any arrival order, duplicates, the horizon, restore from the changelog."""

from __future__ import annotations

import itertools
import random
from typing import Any

from slipstream.monitoring.outcomes.join import LABELLED, ORPHAN_LABEL, UNLABELLED, LabelJoin

DAY = 86_400_000_000
HOUR = 3_600_000_000


def prediction(eid: int, t: int, version: str = "1", score: float = 0.3) -> dict[str, Any]:
    return {
        "prediction_id": f"{eid}@{version}",
        "event_id": str(eid),
        "customer_id": eid % 7,
        "terminal_id": 100 + eid,
        "model_name": "fraud",
        "model_version": version,
        "role": "CHAMPION",
        "score": score,
        "decision": score >= 0.5,
        "threshold": 0.5,
        "event_time": t,
    }


def comparison(eid: int, t: int, version: str = "2", score: float = 0.7) -> dict[str, Any]:
    return {
        "event_id": str(eid),
        "customer_id": eid % 7,
        "model_name": "fraud",
        "event_time": t,
        "challenger_version": version,
        "challenger_score": score,
        "challenger_decision": score >= 0.4,
        "challenger_threshold": 0.4,
    }


def label(eid: int, t: int, delay: int, fraud: bool = True) -> dict[str, Any]:
    return {
        "transaction_id": eid,
        "customer_id": eid % 7,
        "terminal_id": 100 + eid,
        "tx_event_time": t,
        "event_time": t + delay,
        "is_fraud": fraud,
    }


def feed(join: LabelJoin, records: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind, record in records:
        handler = {"p": join.on_prediction, "c": join.on_comparison, "l": join.on_label}[kind]
        out.extend(handler(record))
    return out


def test_a_label_joins_every_score_of_its_event_in_any_order() -> None:
    t = 10 * DAY
    records = [("p", prediction(1, t)), ("c", comparison(1, t)), ("l", label(1, t, 3 * DAY))]
    results = []
    for order in itertools.permutations(records):
        out = feed(LabelJoin(30 * DAY, DAY), list(order))
        results.append(sorted((o["outcome_id"], o["status"], o["label"], o["label_delay_ms"]) for o in out))
    expected = [("1@1", LABELLED, True, 3 * 86_400_000.0), ("1@2", LABELLED, True, 3 * 86_400_000.0)]
    assert all(r == expected for r in results), results


def test_outcome_fields_come_from_the_score_and_the_label() -> None:
    out = feed(LabelJoin(30 * DAY), [("c", comparison(5, DAY, score=0.45)), ("l", label(5, DAY, HOUR, False))])
    (o,) = out
    assert o["role"] == "CHALLENGER" and o["model_version"] == "2" and o["score"] == 0.45
    assert o["decision"] is True and o["threshold"] == 0.4 and o["label"] is False
    assert o["terminal_id"] == 105 and o["label_time"] == DAY + HOUR and o["event_time"] == DAY


def test_duplicates_change_nothing() -> None:
    join = LabelJoin(30 * DAY)
    out = feed(join, [("p", prediction(1, DAY)), ("p", prediction(1, DAY)), ("l", label(1, DAY, HOUR))])
    out += feed(join, [("p", prediction(1, DAY)), ("l", label(1, DAY, HOUR, fraud=False))])
    assert [o["outcome_id"] for o in out] == ["1@1"]
    assert join.counts.duplicate_scores == 2 and join.counts.duplicate_labels == 1
    assert join.counts.conflicting_labels == 1


def test_the_horizon_writes_what_is_owed_and_forgets() -> None:
    join = LabelJoin(30 * DAY, DAY)
    out = feed(join, [("p", prediction(1, 0)), ("l", label(2, 0, HOUR)), ("p", prediction(3, 20 * DAY))])
    assert out == [] and len(join.entries) == 3
    out = feed(join, [("p", prediction(4, 31 * DAY + 1))])
    assert out == []  # labels and comparisons may still be behind: they hold the clock back
    out = join.set_idle(frozenset({"labels", "shadow-comparisons"}))  # read to their end: the clock passes 31 d
    statuses = sorted((o["outcome_id"], o["status"]) for o in out)
    assert statuses == [("1@1", UNLABELLED), ("label:2", ORPHAN_LABEL)]
    assert set(join.entries) == {"3", "4"}
    late = feed(join, [("l", label(1, 0, 32 * DAY)), ("p", prediction(2, 0))])
    assert [(o["outcome_id"], o["status"]) for o in late] == [("label:1", ORPHAN_LABEL), ("2@1", UNLABELLED)]
    assert join.counts.unlabelled == 2 and join.counts.orphan_labels == 2 and set(join.entries) == {"3", "4"}


def test_a_label_seen_then_its_prediction_counts_no_orphan() -> None:
    join = LabelJoin(DAY, inputs=("predictions",))  # only the predictions' progress moves this clock
    out = feed(join, [("l", label(1, 0, HOUR)), ("p", prediction(1, 0)), ("p", prediction(9, 3 * DAY))])
    assert [(o["outcome_id"], o["status"]) for o in out] == [("1@1", LABELLED)]
    assert join.counts.orphan_labels == 0 and "1" not in join.entries


def test_changelog_restores_the_same_state() -> None:
    """Replaying any prefix, restoring from its changelog, then the rest, gives the outcomes of one run."""
    rng = random.Random(7)
    records: list[tuple[str, dict[str, Any]]] = []
    for eid in range(300):
        t = eid * HOUR
        records.append(("p", prediction(eid, t, score=rng.random())))
        if rng.random() < 0.5:
            records.append(("c", comparison(eid, t, score=rng.random())))
        if rng.random() < 0.8:
            records.append(("l", label(eid, t, rng.randrange(1, 10 * DAY))))
    rng.shuffle(records)
    one = LabelJoin(5 * DAY, DAY)
    whole = feed(one, records)
    for cut in (0, 1, 150, 451, len(records)):
        first = LabelJoin(5 * DAY, DAY)
        out = feed(first, records[:cut])
        log: dict[bytes, bytes] = {}
        for key, value in first.changes():
            if value is None:
                log.pop(key, None)
            else:
                log[key] = value
        second = LabelJoin(5 * DAY, DAY)
        second.restore(log)
        out += feed(second, records[cut:])
        assert out == whole, cut
    ids = [o["outcome_id"] for o in whole]
    assert len(ids) == len(set(ids))


def test_a_topic_read_far_ahead_expires_nothing_a_slower_one_can_still_answer() -> None:
    """A joiner catching up reads the labels of 40 days before the predictions they answer: all are joined."""
    join = LabelJoin(30 * DAY, DAY)
    labels = [("l", label(i, i * HOUR, 30 * DAY)) for i in range(24 * 40)]
    scores = [("p", prediction(i, i * HOUR)) for i in range(24 * 40)]
    out = feed(join, labels) + feed(join, scores)
    assert {o["status"] for o in out} == {LABELLED} and len(out) == 24 * 40
    assert join.counts.unlabelled == join.counts.orphan_labels == 0
