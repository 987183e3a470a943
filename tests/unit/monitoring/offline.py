"""The offline computation the realised figures must equal: predictions and challenger scores merged with the
labels by event id in pandas, then scikit-learn's metrics (and the Handbook's card precision) per version and period.
Shared by the unit test (generated records) and the integration test (the same records through Kafka)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from slipstream.models.evaluation import card_precision_at_k
from tests.unit.monitoring.synthetic import Stream

COUNTS = ("seen", "labelled", "unlabelled_at_horizon", "awaiting", "positives", "flagged", "comparisons")
FLOATS = ("label_coverage", "auc_roc", "average_precision", "precision", "recall", "card_precision_at_100")


def offline_rows(stream: Stream, horizon_days: float) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(model_version, period, key) -> figures, computed from the raw records and the ground truth alone."""
    champion = pd.DataFrame(stream.predictions)[["event_id", "customer_id", "event_time", "model_version"]]
    champion = champion.assign(
        score=[p["score"] for p in stream.predictions], decision=[p["decision"] for p in stream.predictions]
    )
    comparisons = pd.DataFrame(stream.comparisons)
    challenger = comparisons[["event_id", "customer_id", "event_time"]].assign(
        model_version=comparisons["challenger_version"],
        score=comparisons["challenger_score"],
        decision=comparisons["challenger_decision"],
        flip=comparisons["flip"],
    )
    scores = pd.concat([champion, challenger], ignore_index=True)
    truth = pd.DataFrame(stream.truth)
    arrived = truth[truth["label_time"] <= stream.now]
    merged = scores.merge(arrived, on="event_id", how="left")
    merged["labelled"] = merged["label"].notna()
    merged["unlabelled"] = ~merged["labelled"] & (merged["event_time"] + timedelta(days=horizon_days) <= stream.now)
    merged["day"] = merged["event_time"].dt.strftime("%Y-%m-%d")
    merged["week"] = [f"{t.isocalendar()[0]}-W{t.isocalendar()[1]:02d}" for t in merged["event_time"]]
    merged["all"] = "all"
    merged = merged.sort_values(["event_time", "event_id"], kind="stable")
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for period in ("day", "week", "all"):
        for (version, key), rows in merged.groupby(["model_version", period]):
            out[(str(version), period, str(key))] = _figures(rows)
    return out


def _figures(rows: pd.DataFrame) -> dict[str, Any]:
    lab = rows[rows["labelled"]]
    y = lab["label"].astype(bool).to_numpy()
    s = lab["score"].to_numpy(dtype=np.float64)
    d = lab["decision"].astype(bool).to_numpy()
    positives = int(y.sum())
    delays: list[datetime] = list((lab["label_time"] - lab["event_time"]) / pd.Timedelta(hours=1))
    compared = rows["flip"].notna() if "flip" in rows else pd.Series(False, index=rows.index)
    cards = lab["customer_id"].to_numpy()
    days = lab["event_time"].dt.floor("D").to_numpy()
    return {
        "seen": len(rows),
        "labelled": len(lab),
        "unlabelled_at_horizon": int(rows["unlabelled"].sum()),
        "awaiting": int((~rows["labelled"] & ~rows["unlabelled"]).sum()),
        "positives": positives,
        "flagged": int(d.sum()),
        "comparisons": int(compared.sum()),
        "label_coverage": len(lab) / len(rows),
        "auc_roc": roc_auc_score(y, s) if 0 < positives < len(y) else None,
        "average_precision": average_precision_score(y, s) if positives else None,
        "precision": precision_score(y, d) if d.any() else None,
        "recall": recall_score(y, d) if positives else None,
        "card_precision_at_100": card_precision_at_k(days, cards, y, s, 100).mean if len(lab) else None,
        "label_delay_p50": float(np.percentile(delays, 50)) if delays else None,
        "flip_rate": float(rows.loc[compared, "flip"].astype(bool).mean()) if compared.any() else None,
    }
