"""PerformanceBook: realised figures equal the offline computation, re-deliveries count once, order does not matter,
maturity and retention say what is true."""

from __future__ import annotations

import random
from typing import Any

import pytest

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.performance import PerformanceBook
from tests.unit.monitoring.offline import COUNTS, FLOATS, offline_rows
from tests.unit.monitoring.synthetic import CHALLENGER, CHAMPION, Stream, generate

HORIZON = 6.0


def _book(stream: Stream, **kwargs: Any) -> PerformanceBook:
    book = PerformanceBook(**kwargs)
    for records in (stream.outcomes, stream.predictions, stream.comparisons, stream.rankings):
        book.update_all(records)  # outcomes first: they may beat their predictions
    return book


def _rows(summary: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["model_version"], r["period"], r["key"]): r for r in summary["performance"]}


def assert_equals_offline(summary: dict[str, Any], stream: Stream, horizon_days: float) -> int:
    """Every row of ``summary`` equals the offline computation: counts exactly, float metrics to 1e-12. Returns the
    number of rows compared."""
    expected = offline_rows(stream, horizon_days)
    got = _rows(summary)
    assert set(got) == set(expected)
    for key, want in expected.items():
        row = got[key]
        for name in COUNTS:
            assert row[name] == want[name], (key, name)
        for name in FLOATS:
            if want[name] is None:
                assert row[name] is None, (key, name)
            else:
                assert row[name] == pytest.approx(want[name], abs=1e-12, rel=0), (key, name)
        if want["label_delay_p50"] is not None:
            assert row["label_delay_hours"]["p50"] == pytest.approx(want["label_delay_p50"], abs=1e-9)
        if want["flip_rate"] is not None:
            assert row["flip_rate"] == want["flip_rate"]
    return len(expected)


def test_realised_figures_equal_the_offline_computation_exactly() -> None:
    stream = generate()
    summary = _book(stream).summary()
    compared = assert_equals_offline(summary, stream, HORIZON)
    assert compared == 2 * (10 + 2 + 1)  # two versions x (10 days, 2 ISO weeks, all)
    versions = {(r["model_version"], r["role"]) for r in summary["performance"]}
    assert versions == {(CHAMPION, "CHAMPION"), (CHALLENGER, "CHALLENGER")}
    first_day = _rows(summary)[(CHAMPION, "day", "2018-08-01")]
    assert first_day["labelled"] > 0 and first_day["auc_roc"] is not None  # the comparison is not vacuous


def test_redelivered_and_reordered_records_count_once() -> None:
    stream = generate(n=800)
    once = _book(stream).summary()
    records = stream.predictions + stream.comparisons + stream.outcomes + stream.rankings
    twice = records + records[: len(records) // 2]
    random.Random(3).shuffle(twice)
    again = PerformanceBook().update_all(twice).summary()
    assert again["performance"] == once["performance"]
    assert again["rankings"] == once["rankings"]
    assert sum(again["duplicates"].values()) == len(records) // 2
    assert again["labels_without_prediction"] == once["labels_without_prediction"] == 5


def test_maturity_means_nothing_awaits_and_awaiting_rows_carry_an_estimate() -> None:
    stream = generate(n=1200)
    rows = _rows(_book(stream).summary())
    first, last = rows[(CHAMPION, "day", "2018-08-01")], rows[(CHAMPION, "day", "2018-08-10")]
    assert first["mature"] and first["awaiting"] == 0 and first["estimated"] is None
    assert not last["mature"] and last["awaiting"] > 0
    assert last["estimated"]["kind"] == "estimated" and last["estimated"]["n"] == last["awaiting"]
    assert first["calibration"]["n"] == first["labelled"]


def test_an_outcome_alone_makes_the_item_and_a_prediction_awaits_until_its_outcome() -> None:
    stream = generate(n=50)
    book = PerformanceBook().update_all(stream.predictions)
    rows = _rows(book.summary(["all"]))
    assert rows[(CHAMPION, "all", "all")]["awaiting"] == 50
    assert rows[(CHAMPION, "all", "all")]["label_coverage"] == 0.0
    only_outcomes = PerformanceBook().update_all(o for o in stream.outcomes if o["role"] == "CHAMPION")
    labelled = sum(1 for o in stream.outcomes if o["role"] == "CHAMPION" and o["status"] == "LABELLED")
    assert _rows(only_outcomes.summary(["all"]))[(CHAMPION, "all", "all")]["labelled"] == labelled


def test_rank_agreement_is_the_mean_of_the_comparisons() -> None:
    stream = generate(n=10, rankings=40)
    summary = _book(stream).summary(["all"])
    (row,) = summary["rankings"]
    n = len(stream.rankings)
    assert row["comparisons"] == n
    assert row["mean_overlap_at_k"] == pytest.approx(sum(r["overlap_at_k"] for r in stream.rankings) / n)
    assert row["mean_kendall_tau"] == pytest.approx(sum(r["kendall_tau"] for r in stream.rankings) / n)
    assert row["top_changed_rate"] == pytest.approx(sum(r["top_changed"] for r in stream.rankings) / n)


def test_retention_reduces_old_weeks_to_their_rows_and_bounds_memory() -> None:
    stream = generate(n=3000, days=24, horizon_days=6.0)
    full = _book(stream).summary()
    retained = _book(stream, retain_days=7.0).compact()
    summary = retained.summary()
    assert len(retained._items) < 0.75 * 2 * len(stream.predictions)  # whole weeks were dropped
    full_rows, kept = _rows(full), _rows(summary)
    reduced_days = [k for k in full_rows if k[1] == "day" and k[2] < "2018-08-13"]
    assert reduced_days
    for key in reduced_days:  # a reduced day keeps exactly the figures it had when it was reduced
        for name in ("seen", "labelled", "auc_roc", "average_precision"):
            assert kept[key][name] == full_rows[key][name], (key, name)
    everything = kept[(CHAMPION, "all", "all")]
    assert everything["seen"] == full_rows[(CHAMPION, "all", "all")]["seen"]
    assert everything["metrics_since"] is not None
    late = dict(stream.predictions[0])
    retained.update(late | {"prediction_id": "late@3", "event_id": "late"})
    assert retained.late == 1


def test_bad_arguments_and_records_name_the_value() -> None:
    with pytest.raises(MonitoringError, match="'month'"):
        PerformanceBook().summary(["month"])
    with pytest.raises(MonitoringError, match="-1"):
        PerformanceBook(retain_days=-1)
    with pytest.raises(MonitoringError, match="user_id"):
        PerformanceBook().update({"user_id": 1})
    stream = generate(n=5)
    bad = stream.outcomes[0] | {"score": None}
    book = PerformanceBook().update(bad)
    assert book.rejected == 1 and bad["outcome_id"] in book.rejections[0]
