"""Synthetic champion predictions, challenger comparisons, rank comparisons and label-joiner outcomes, complete
enough to be produced on the contracts' topics, with the ground truth they were made from.

Labels are Bernoulli(champion score), so the champion is calibrated by construction; scores are rounded to 3
decimals so ties occur (the metrics must break them as scikit-learn does). A label arrives ``delay`` after its event
(log-normal, hours to weeks, like ``--label-delay realistic``); at ``now`` the labels arrived are LABELLED outcomes,
events older than the horizon without one are UNLABELLED_AT_HORIZON and the rest await their label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

START = datetime(2018, 8, 1, tzinfo=UTC)  # a Wednesday: the days span two ISO weeks
MODEL, CHAMPION, CHALLENGER = "fraud", "3", "4"
THRESHOLD, CHALLENGER_THRESHOLD = 0.5, 0.45


@dataclass
class Stream:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    rankings: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)  # event_id, label, label_time (every event)
    now: datetime = START


def _outcome(
    event: dict[str, Any],
    version: str,
    role: str,
    score: float,
    decision: bool,
    threshold: float,
    status: str,
    label: bool | None,
    label_time: datetime | None,
) -> dict[str, Any]:
    delay = (label_time - event["event_time"]) / timedelta(milliseconds=1) if label_time else None
    return {
        "outcome_id": f"{event['event_id']}@{version}",
        "status": status,
        "event_id": event["event_id"],
        "customer_id": event["customer_id"],
        "terminal_id": None,
        "event_time": event["event_time"],
        "model_name": MODEL,
        "model_version": version,
        "role": role,
        "score": score,
        "decision": decision,
        "threshold": threshold,
        "label": label,
        "label_time": label_time,
        "label_delay_ms": delay,
    }


def generate(
    n: int = 3000,
    days: int = 10,
    seed: int = 7,
    customers: int = 400,
    horizon_days: float = 6.0,
    label_only: int = 5,
    rankings: int = 50,
) -> Stream:
    rng = np.random.default_rng(seed)
    out = Stream(now=START + timedelta(days=days))
    offsets = np.sort(rng.uniform(0, days * 86_400, n))
    for i, offset in enumerate(offsets):
        event_time = START + timedelta(seconds=float(offset))
        p = round(float(rng.beta(0.6, 4.0)), 3)
        q = round(float(np.clip(p + rng.normal(0, 0.08), 0, 1)), 3)
        label = bool(rng.random() < p)
        label_time = event_time + timedelta(hours=float(rng.lognormal(np.log(72), 1.0)))
        event = {"event_id": str(100_000 + i), "customer_id": int(rng.integers(customers)), "event_time": event_time}
        out.truth.append({"event_id": event["event_id"], "label": label, "label_time": label_time})
        pid = f"{event['event_id']}@{CHAMPION}"
        out.predictions.append(
            {
                "prediction_id": pid,
                **event,
                "model_name": MODEL,
                "model_version": CHAMPION,
                "score": p,
                "decision": p >= THRESHOLD,
                "threshold": THRESHOLD,
                "features": {"amount": float(i)},
                "feature_event_time": event_time,
                "feature_age_ms": 0.0,
                "received_at": event_time,
                "scored_at": event_time,
                "role": "CHAMPION",
                "terminal_id": 1,
                "feature_freshness": {},
                "timings_us": {},
                "source_offset": i,
            }
        )
        out.comparisons.append(
            {
                "comparison_id": f"{pid}~{CHALLENGER}",
                "prediction_id": pid,
                **event,
                "model_name": MODEL,
                "champion_version": CHAMPION,
                "challenger_version": CHALLENGER,
                "challenger_alias": "challenger",
                "champion_score": p,
                "challenger_score": q,
                "champion_threshold": THRESHOLD,
                "challenger_threshold": CHALLENGER_THRESHOLD,
                "champion_decision": p >= THRESHOLD,
                "challenger_decision": q >= CHALLENGER_THRESHOLD,
                "flip": (p >= THRESHOLD) != (q >= CHALLENGER_THRESHOLD),
                "score_delta": q - p,
                "feature_source": "PREDICTION",
                "challenger_latency_us": 50.0,
                "compared_at": event_time,
            }
        )
        scored = (
            (CHAMPION, "CHAMPION", p, p >= THRESHOLD, THRESHOLD),
            (CHALLENGER, "CHALLENGER", q, q >= CHALLENGER_THRESHOLD, CHALLENGER_THRESHOLD),
        )
        for version, role, score, decision, threshold in scored:
            if label_time <= out.now:
                out.outcomes.append(
                    _outcome(event, version, role, score, decision, threshold, "LABELLED", label, label_time)
                )
            elif event_time + timedelta(days=horizon_days) <= out.now:
                out.outcomes.append(
                    _outcome(event, version, role, score, decision, threshold, "UNLABELLED_AT_HORIZON", None, None)
                )
    for j in range(label_only):
        event = {"event_id": f"9{j:05d}", "customer_id": 1, "event_time": START + timedelta(hours=j)}
        row = _outcome(event, "", "NONE", 0.0, False, 0.0, "LABEL_WITHOUT_PREDICTION", True, START + timedelta(days=2))
        out.outcomes.append(
            row | {"outcome_id": f"label:{event['event_id']}", "score": None, "decision": None, "threshold": None}
        )
    for j in range(rankings):
        overlap, tau = float(rng.uniform(0.5, 1)), float(rng.uniform(0, 1))
        out.rankings.append(
            {
                "comparison_id": f"r{j}@1~2",
                "request_id": f"r{j}",
                "user_id": j,
                "model_name": "reco",
                "event_time": START + timedelta(hours=5 * j),
                "champion_version": "1",
                "challenger_version": "2",
                "challenger_alias": "challenger",
                "k": 10,
                "n_items": 20,
                "overlap_at_k": overlap,
                "kendall_tau": tau,
                "ndcg_at_k": float(rng.uniform(0.8, 1)),
                "top_changed": bool(j % 3 == 0),
                "challenger_items": [1, 2, 3],
                "challenger_latency_us": 80.0,
                "compared_at": START,
            }
        )
    return out
