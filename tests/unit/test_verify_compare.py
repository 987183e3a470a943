"""The verify's bounded-memory comparison: the sharded offline engine equals the whole one, and the feature log's
table keeps the newest vector per event."""

from __future__ import annotations

import pandas as pd
import pytest

from slipstream.features.definitions import FRAUD
from slipstream.features.offline import compute_offline, latest_view_rows
from slipstream.verify_compare import VectorTable, check_offline, offline_parts
from tests.fraud_reference import small_fraud_streams


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    tx, labels = small_fraud_streams(n_customers=30, n_terminals=60, days=40)
    out = {}
    for name, records, times in (
        ("transactions", tx, ["event_time"]),
        ("labels", labels, ["event_time", "tx_event_time"]),
    ):
        frame = pd.DataFrame(records)
        for column in times:
            frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)
        out[name] = frame
    return out


def test_sharded_offline_parts_equal_the_whole_offline_engine(frames: dict[str, pd.DataFrame]) -> None:
    whole = compute_offline(FRAUD, frames)
    table = VectorTable(frames["transactions"]["transaction_id"].astype(str).tolist(), FRAUD.feature_names)
    names = list(FRAUD.feature_names)
    table.add(whole.vectors["transaction_id"].astype(str).tolist(), whole.vectors[names].to_dict("records"))
    report, latest = check_offline(table, FRAUD, frames, shards=4)
    assert report["features_per_vector"] == len(names)
    assert report["mismatches"] == 0 and report["missing_vectors"] == 0
    want = latest_view_rows(whole.view_rows)
    for view, frame in want.items():
        keys = list(frame.columns[:1])
        got = latest[view].sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, frame.sort_values(keys).reset_index(drop=True), check_like=True)
    assert sum(1 for _ in offline_parts(FRAUD, frames, shards=4)) == 8  # two views, four shards each


def test_a_wrong_value_is_counted_and_a_later_vector_replaces_an_earlier(frames: dict[str, pd.DataFrame]) -> None:
    whole = compute_offline(FRAUD, frames).vectors
    table = VectorTable(frames["transactions"]["transaction_id"].astype(str).tolist(), FRAUD.feature_names)
    names = list(FRAUD.feature_names)
    vectors = whole[names].to_dict("records")
    ids = whole["transaction_id"].astype(str).tolist()
    wrong = dict(vectors[0], TX_AMOUNT=vectors[0]["TX_AMOUNT"] + 1)
    table.add([ids[0]], [wrong])
    table.add(ids[1:], vectors[1:])
    assert check_offline(table, FRAUD, frames, shards=2)[0]["mismatches_by_feature"] == {"TX_AMOUNT": 1}
    table.add([ids[0]], [vectors[0]])  # the engine's correction comes later in the log
    assert check_offline(table, FRAUD, frames, shards=2)[0]["mismatches"] == 0
