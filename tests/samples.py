"""One valid sample record per contract, shared by unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2018, 4, 1, 0, 2, 10, 123456, tzinfo=UTC)


def sample(name: str, i: int = 0) -> dict[str, Any]:
    t = T0 + timedelta(seconds=i)
    records: dict[str, dict[str, Any]] = {
        "transaction": {
            "transaction_id": i,
            "event_time": t,
            "customer_id": 596 + i,
            "terminal_id": 3156,
            "amount": 57.16,
        },
        "label": {
            "transaction_id": i,
            "customer_id": 596,
            "terminal_id": 3156,
            "tx_event_time": t,
            "event_time": t + timedelta(days=7),
            "is_fraud": i % 2 == 1,
            "fraud_scenario": i % 4,
        },
        "interaction": {
            "event_id": f"ev-{i}",
            "event_time": t,
            "user_id": 7,
            "item_id": 1000 + i,
            "category_id": 3,
            "action": "CLICK",
        },
        "prediction": {
            "prediction_id": f"{i}@3",
            "event_id": str(i),
            "customer_id": 596,
            "model_name": "fraud",
            "model_version": "3",
            "score": 0.25,
            "decision": False,
            "threshold": 0.5,
            "features": {"TX_AMOUNT": 57.16, "CUSTOMER_ID_NB_TX_1DAY_WINDOW": 1.0},
            "feature_event_time": t - timedelta(milliseconds=3),
            "feature_age_ms": 3.0,
            "event_time": t,
            "received_at": t,
            "scored_at": t + timedelta(microseconds=150),
            "role": "CHAMPION",
            "terminal_id": 3156,
            "feature_freshness": {"customer_spending": 3.0, "terminal_risk": 61_000.0},
            "timings_us": {"redis_us": 60.0, "features_us": 40.0, "model_us": 12.0, "total_us": 112.0},
            "source_offset": 42,
        },
        "recommendation": {
            "request_id": f"r-{i}",
            "user_id": 7,
            "model_name": "reco",
            "model_version": "1",
            "items": [
                {"item_id": 5, "score": 1.5, "rank": 1, "features": {"USER_NB_EVENTS_1H": 2.0}},
                {"item_id": 9, "score": 0.5, "rank": 2, "features": {"USER_NB_EVENTS_1H": 2.0}},
            ],
            "feature_event_time": None,
            "feature_age_ms": None,
            "event_time": t,
            "scored_at": t,
            "received_at": None,
            "timings_us": {"total_us": 180.0},
            "source_offset": None,
        },
        "reco_request": {
            "request_id": f"r-{i}",
            "user_id": 7,
            "event_time": t,
            "candidates": [
                {"item_id": 5, "category_id": 3, "retrieval_views_7d": 120.0},
                {"item_id": 9, "category_id": 1, "retrieval_views_7d": 0.0},
            ],
            "top_k": None,
        },
        "model_event": {
            "event_id": f"m-{i}",
            "event_time": t,
            "action": "PROMOTED",
            "model_name": "fraud",
            "alias": "champion",
            "version": "4",
            "previous_version": "3",
            "artifact_uri": "models:/fraud/4",
            "checksum": "ab" * 32,
            "actor": "test",
            "reason": None,
        },
        "feature_vector": {
            "feature_set": "fraud",
            "event_id": str(i),
            "entity_key": "596",
            "event_time": t,
            "features": {"TX_AMOUNT": 57.16, "CUSTOMER_ID_NB_TX_1DAY_WINDOW": 2.0},
            "newest_event_time": t,
            "computed_at": t + timedelta(milliseconds=2),
        },
        "dead_letter": {
            "source_topic": "transactions",
            "source_partition": 2,
            "source_offset": 99,
            "source_timestamp": t.replace(microsecond=123000),
            "original_key": b"596",
            "original_value": b"\x00\x01garbage",
            "original_headers": {"trace": b"x"},
            "error_type": "undecodable",
            "reason": "bad bytes",
            "processor": "test",
            "failed_at": t,
        },
    }
    return records[name]
