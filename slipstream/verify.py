"""`slipstream features verify`: stream an event log through Kafka and the online engine, then compare the feature
log and the online store (read through Feast's SDK) with the offline engine over the same events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slipstream.app import Slipstream
from slipstream.features.base import FeatureSet
from slipstream.features.definitions import FRAUD
from slipstream.features.offline import compute_offline, latest_view_rows
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from slipstream.streams.engine.app import EngineJob, run_processes
from slipstream.streams.publish import frame_records

Say = Callable[[str], None]
TOLERANCE = 1e-9
TX_COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    events: Path
    labels: Path | None = None
    days: float | None = None
    keep: bool = False


def _load(config: VerifyConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    tx = pd.read_parquet(config.events, columns=TX_COLUMNS)
    labels_path = config.labels or config.events.with_name(config.events.stem + ".labels.parquet")
    labels = pd.read_parquet(labels_path) if labels_path.exists() else pd.DataFrame(columns=["transaction_id"])
    if config.days is not None:
        end = tx["event_time"].min() + pd.Timedelta(days=config.days)
        tx = tx[tx["event_time"] < end]
        if len(labels):
            labels = labels[labels["event_time"] < end]
    return tx.reset_index(drop=True), labels.reset_index(drop=True)


def _feature_log(app: Slipstream, contracts: Contracts, expected: int) -> dict[str, dict[str, float]]:
    latest: dict[str, dict[str, float]] = {}
    with EventConsumer(app.bootstrap_servers, contracts, ["feature-log"]) as consumer:
        idle = 0
        while idle < 10 and len(latest) < expected or idle < 2:
            batch = consumer.poll_batch(max_records=20_000, timeout=0.5)
            for event in batch.events:
                latest[str(event.value["event_id"])] = event.value["features"]
            idle = 0 if batch.events else idle + 1
    return latest


def _compare_vectors(
    online: dict[str, dict[str, float]], offline: pd.DataFrame, feature_set: FeatureSet
) -> dict[str, Any]:
    id_field = feature_set.views[0].source(feature_set.trigger).id_field
    names = [c for c in offline.columns if c not in (id_field, "event_time") and c in next(iter(online.values()), {})]
    missing = 0
    mismatches: dict[str, int] = {}
    worst = 0.0
    ids = offline[id_field].astype(str).to_numpy()
    table = np.full((len(offline), len(names)), np.nan)
    for row, event_id in enumerate(ids):
        vector = online.get(event_id)
        if vector is None:
            missing += 1
            continue
        table[row] = [vector.get(name, np.nan) for name in names]
    for j, name in enumerate(names):
        diff = np.abs(table[:, j] - offline[name].to_numpy(dtype=float))
        present = ~np.isnan(table[:, j])
        bad = int(np.sum(diff[present] > TOLERANCE)) + int(np.sum(~present))
        if bad:
            mismatches[name] = bad
        if present.any():
            worst = max(worst, float(np.nanmax(diff[present])))
    return {
        "compared": int(len(offline)),
        "features_per_vector": len(names),
        "missing_vectors": missing,
        "mismatches": int(sum(mismatches.values())),
        "mismatches_by_feature": mismatches,
        "max_abs_diff": worst,
    }


def _compare_online_store(
    app: Slipstream, project: str, feature_set: FeatureSet, offline_rows: dict[str, pd.DataFrame]
) -> dict[str, Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(app.feast_config(project).repo_dir))
    compared = mismatches = 0
    worst = 0.0
    for view in feature_set.views:
        latest = latest_view_rows({view.name: offline_rows[view.name]})[view.name]
        keys = list(view.entity.join_keys)
        refs = [f"{view.name}:{name}" for name in view.feature_names]
        entity_rows: list[dict[str, Any]] = [
            {str(k): int(v) if isinstance(v, np.integer) else v for k, v in row.items()}
            for row in latest[keys].to_dict("records")
        ]
        got = store.get_online_features(features=refs, entity_rows=entity_rows).to_df()
        for name in view.feature_names:
            online = got[name].to_numpy(dtype=float)
            diff = np.abs(online - latest[name].to_numpy(dtype=float))
            bad = int(np.sum(~(diff <= TOLERANCE)))  # NaN (missing in Redis) counts as a mismatch
            mismatches += bad
            if np.isfinite(diff).any():
                worst = max(worst, float(np.nanmax(diff)))
        compared += len(latest)
    return {"online_entities_compared": compared, "online_mismatches": mismatches, "online_max_abs_diff": worst}


def verify(app: Slipstream, config: VerifyConfig, say: Say, feature_set: FeatureSet = FRAUD) -> dict[str, Any]:
    tx, labels = _load(config)
    tag = uuid.uuid4().hex[:8]
    base = app.contracts
    contracts = Contracts(TopicCatalog(f"verify-{tag}."), base.registry, base.framing)
    app.apply_topics(contracts)
    project = f"verify_{tag}"
    from slipstream.features.feast_repo import apply_repo

    apply_repo(app.feast_config(project), [feature_set])
    say(f"publishing {len(tx):,} transactions and {len(labels):,} labels to {contracts.catalog.prefix}*…")
    started = time.perf_counter()
    with EventProducer(app.bootstrap_servers, contracts, linger_ms=20) as producer:
        for record in frame_records(tx):
            producer.send("transactions", record)
        for record in frame_records(labels):
            producer.send("labels", record)
    published = time.perf_counter() - started
    say("running the online engine until it has consumed everything…")
    job = EngineJob(app.engine_settings(project=project), contracts.catalog.prefix, feature_set.name)
    started = time.perf_counter()
    stats = run_processes(job, threading.Event(), until_idle_s=4.0)
    engine_seconds = time.perf_counter() - started
    say("reading the feature log; computing the offline features…")
    online = _feature_log(app, contracts, len(tx))
    offline = compute_offline(feature_set, {"transactions": tx, "labels": labels})
    report: dict[str, Any] = {
        "days": config.days,
        "transactions": len(tx),
        "labels": len(labels),
        "publish_seconds": round(published, 2),
        "engine_seconds": round(engine_seconds, 2),
        "dead_lettered": sum(s.dead_lettered for s in stats.values()),
    }
    report |= _compare_vectors(online, offline.vectors, feature_set)
    say("reading the online store through Feast's SDK…")
    report |= _compare_online_store(app, project, feature_set, offline.view_rows)
    if not config.keep:
        TopicAdmin(app.bootstrap_servers).delete(contracts.catalog.full_names())
    return report
