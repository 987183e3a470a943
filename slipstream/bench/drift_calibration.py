"""The drift monitor on the Fraud Handbook simulation: false alarms without drift, detection of a shifted amount,
and CPU per observed prediction. ``python -m slipstream.bench.drift_calibration [SIM.parquet] [--skip DAYS]``.

The reference is built from days ``skip .. skip+29`` of point-in-time features (the model trained on them, its
scores), then the monitor runs 1-day windows over the 60 following days, as is and with TX_AMOUNT x 1.3 from the
31st of them on. Numbers are printed as one JSON document (docs/drift.md quotes them).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.dataset import fraud_training_frame
from slipstream.models.fraud import predict, train_fraud
from slipstream.models.reference import drift_reference
from slipstream.monitoring.drift.monitor import DriftMonitor, DriftSettings

DAY_US = 86_400 * 1_000_000


def _frame(path: Path, days: int) -> pd.DataFrame:
    tx = pd.read_parquet(path)
    labels = pd.read_parquet(path.with_name(path.name.replace(".parquet", ".labels.parquet")))
    end = tx["event_time"].min().normalize() + pd.Timedelta(days=days)
    return fraud_training_frame(tx[tx["event_time"] < end], labels[labels["tx_event_time"] < end])


def _run(
    monitor: DriftMonitor, times: np.ndarray, x: np.ndarray, scores: np.ndarray, names: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    windows: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    rows = [dict(zip(names, r, strict=True)) for r in x.tolist()]
    cpu = 0.0
    day = times[0] - times[0] % DAY_US
    for t, features, score in zip(times.tolist(), rows, scores.tolist(), strict=True):
        if t >= day + DAY_US:
            w, a = monitor.advance(t - t % DAY_US)
            windows += w
            alarms += a
            day = t - t % DAY_US
        started = time.process_time()
        monitor.observe_prediction(t, features, score)
        cpu += time.process_time() - started
    w, a = monitor.advance(day + DAY_US)
    return windows + w, alarms + a, cpu / len(times)


def _summary(windows: list[dict[str, Any]], alarms: list[dict[str, Any]]) -> dict[str, Any]:
    by_subject: dict[str, dict[str, Any]] = {}
    for window in windows:
        for row in window["subjects"]:
            entry = by_subject.setdefault(row["subject"], {"max_value": 0.0, "max_ks": 0.0, "min_threshold": 1e9})
            entry["statistic"] = row["statistic"]
            entry["max_value"] = round(max(entry["max_value"], row["value"]), 5)
            entry["max_ks"] = round(max(entry["max_ks"], row["others"].get("ks", 0.0)), 5)
            entry["min_threshold"] = round(min(entry["min_threshold"], row["threshold"]), 5)
    return {
        "windows": len(windows),
        "alarmed_windows": sum(w["alarmed"] for w in windows),
        "alarmed_days": [i for i, w in enumerate(windows) if w["alarmed"]],
        "alarms": [(a["kind"], a["subject"], a["window_end"]) for a in alarms][:20],
        "subjects": by_subject,
    }


def main(argv: list[str]) -> dict[str, Any]:
    path = Path(argv[0]) if argv and not argv[0].startswith("--") else Path(".slipstream/data/fraud.parquet")
    skip = int(argv[argv.index("--skip") + 1]) if "--skip" in argv else 0
    names = list(FRAUD.model_input)
    frame = _frame(path, skip + 90)
    first = frame["event_time"].min().normalize()
    day = ((frame["event_time"] - first) // pd.Timedelta(days=1)).to_numpy()
    ref, live = frame[(day >= skip) & (day < skip + 30)], frame[(day >= skip + 30) & (day < skip + 90)]
    model = train_fraud(ref)
    reference = drift_reference(ref[names], predict(model, ref), ref["event_time"], names)
    size = len(json.dumps(reference, separators=(",", ":")))
    settings = DriftSettings()
    times = live["event_time"].astype("datetime64[us, UTC]").astype(np.int64).to_numpy()
    x = live[names].to_numpy(dtype=np.float64)
    out: dict[str, Any] = {"reference_days": [skip, skip + 29], "reference_json_bytes": size, "fdr_q": settings.fdr_q}
    monitor = DriftMonitor(reference, settings, model_name="fraud", model_version="bench")
    windows, alarms, cpu = _run(monitor, times, x, predict(model, live), names)
    out["no_drift"] = _summary(windows, alarms)
    out["cpu_us_per_prediction"] = round(cpu * 1e6, 2)
    shifted = live.copy()
    later = day[(day >= skip + 30) & (day < skip + 90)] >= skip + 60
    shifted.loc[later, "TX_AMOUNT"] = shifted.loc[later, "TX_AMOUNT"] * 1.3
    monitor = DriftMonitor(reference, settings, model_name="fraud", model_version="bench")
    windows, alarms, _ = _run(monitor, times, shifted[names].to_numpy(), predict(model, shifted), names)
    out["amount_x1.3_from_day_30"] = _summary(windows, alarms)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1, default=str))
