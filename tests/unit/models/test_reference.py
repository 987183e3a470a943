"""The drift reference: kinds, edges, totals and per-window counts that add up, UTC windows, JSON-able."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from slipstream.models.exceptions import InvalidInputError
from slipstream.models.reference import drift_reference

DAY = 86_400 * 1_000_000


def test_layout_kinds_and_mergeable_counts() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"amount": rng.lognormal(3, 1, n), "night": rng.integers(0, 2, n).astype(float)})
    times = pd.Series(pd.Timestamp("2024-03-01 22:00", tz="Europe/Paris") + pd.to_timedelta(np.arange(n), unit="min"))
    ref = drift_reference(frame, rng.random(n), times, ["amount", "night"], bins=10)
    assert json.loads(json.dumps(ref, allow_nan=False)) == ref
    assert ref["granularity_s"] == 86_400 and ref["n"] == n and sum(ref["window_n"]) == n
    assert all(s % DAY == 0 for s in ref["window_starts"])  # UTC-aligned (22:00 Paris is 21:00 UTC)
    assert ref["window_starts"][0] == pd.Timestamp("2024-03-01", tz="UTC").value // 1000
    amount, night = ref["subjects"]["amount"], ref["subjects"]["night"]
    assert amount["kind"] == "numeric" and len(amount["edges"]) == 9 and amount["edges"] == sorted(amount["edges"])
    assert night == {**night, "kind": "binary", "edges": [0.5]}
    for subject in ref["subjects"].values():
        assert len(subject["counts"]) == len(subject["edges"]) + 1 == len(subject["window_counts"][0])
        assert np.asarray(subject["window_counts"]).sum(axis=0).tolist() == subject["counts"]
        assert np.asarray(subject["window_counts"]).sum(axis=1).tolist() == ref["window_n"]


def test_discrete_features_get_deduplicated_edges_and_no_times_no_windows() -> None:
    x = np.c_[np.repeat([0.0, 1.0, 2.0, 5.0], 100)]
    ref = drift_reference(x, np.full(400, 0.5), None, ["count"])
    assert ref["subjects"]["count"]["edges"] == sorted(set(ref["subjects"]["count"]["edges"]))
    assert ref["subjects"]["count"]["counts"][0] == 100  # the lowest value has its own bin
    assert ref["window_starts"] == [] and ref["subjects"]["count"]["window_counts"] == []


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="naive"):
        drift_reference(np.ones((2, 1)), [0.1, 0.2], pd.Series(pd.to_datetime(["2024-01-01"] * 2)), ["a"])
    with pytest.raises(InvalidInputError, match="non-finite"):
        drift_reference(np.array([[1.0], [np.nan]]), [0.1, 0.2], None, ["a"])
    with pytest.raises(InvalidInputError, match="score"):
        drift_reference(np.ones((2, 1)), [0.1, 0.2], None, ["score"])
