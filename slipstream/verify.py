"""`slipstream features verify`: stream an event log through Kafka and the online engine, then compare the feature
log and the online store (read through Feast's SDK) with the offline engine over the same events.

A run lives in a throwaway namespace (:class:`Throwaway`): topics under ``<topic prefix>verify-<tag>.``, the engine's
consumer groups under the same prefix, the Feast project ``verify_<tag>`` in a Feast repository of its own in a
temporary directory (the user's ``feature_store.yaml`` and registry are never touched), and that project's Redis
keys. All of it is removed when the run ends, by success, failure or Ctrl-C, unless it is kept on request; then the
report says what was kept and how to remove it later.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pandas as pd

from slipstream.app import Slipstream
from slipstream.chaos import ChaosPlan, ChaosRun
from slipstream.cli.inputs import beside, check_input, spec
from slipstream.features.base import FeatureSet
from slipstream.features.definitions import FRAUD
from slipstream.features.feast_repo import FeastRepoConfig
from slipstream.features.online_store import project_key_count
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from slipstream.schemas.transport.connection import kafka_config
from slipstream.streams.engine.app import EngineJob, run_processes
from slipstream.streams.publish import frame_records
from slipstream.verify_compare import TOLERANCE, VectorTable, check_offline

Say = Callable[[str], None]
PUBLISH_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    events: Path
    labels: Path | None = None
    days: float | None = None
    keep: bool = False
    workers: int = 1  # per stage
    chaos: ChaosPlan | None = None  # disruptions mid-stream (slipstream.chaos)


def _load(config: VerifyConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events and their labels (``X.labels.parquet`` beside ``X.parquet`` unless given), checked first."""
    tx_spec, labels_spec = spec("verify:transactions"), spec("verify:labels")
    tx_file = check_input(config.events, tx_spec, "--events")
    option = "--labels" if config.labels else "--labels (default: beside --events)"
    labels_file = check_input(config.labels or beside(config.events, "labels"), labels_spec, option)
    tx = pd.read_parquet(tx_file, columns=[c.name for c in tx_spec.columns])
    labels = pd.read_parquet(labels_file)
    labels = labels.loc[:, [c.name for c in labels_spec.columns if c.name in labels.columns]]
    if config.days is not None:
        end = tx["event_time"].min() + pd.Timedelta(days=config.days)
        tx = tx[tx["event_time"] < end]
        labels = labels[labels["event_time"] < end]
    return tx.reset_index(drop=True), labels.reset_index(drop=True)


# ------------------------------------------------------------------------------------------- the throwaway namespace
@contextlib.contextmanager
def _held_interrupts() -> Iterator[list[int]]:
    """Hold Ctrl-C back while the namespace is removed (half a cleanup is the worst outcome); the caller re-raises
    it afterwards. Only the main thread can; elsewhere this does nothing."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, _frame: FrameType | None) -> None:
        held.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True, slots=True)
class Throwaway:
    """Everything one verify run creates: a topic prefix (its consumer groups share it), a Feast project and its
    Redis keys, and a Feast repository of its own under ``directory``."""

    prefix: str
    project: str
    directory: Path

    @classmethod
    def create(cls, app: Slipstream) -> Throwaway:
        tag = uuid.uuid4().hex[:8]
        directory = Path(tempfile.mkdtemp(prefix=f"slipstream-verify-{tag}-"))
        return cls(f"{app.settings.topic_prefix}verify-{tag}.", f"verify_{tag}", directory)

    def feast_config(self, app: Slipstream) -> FeastRepoConfig:
        return FeastRepoConfig(
            project=self.project,
            repo_dir=self.directory / "feast",
            offline_dir=self.directory / "offline",
            redis_url=app.redis_url,
        )

    def describe(self, app: Slipstream) -> dict[str, Any]:
        """What exists of the namespace now, and the command that removes it."""
        admin = TopicAdmin(app.kafka)
        topics = admin.matching(self.prefix)
        return {
            "topic_prefix": self.prefix,
            "topics": topics,
            "consumer_groups": admin.groups(self.prefix),
            "feast_project": self.project,
            "feast_repo": str(self.directory / "feast"),
            "redis_key_pattern": f"*{self.project}",
            "redis_keys": project_key_count(app.redis_url, self.project),
            "remove_with": f"slipstream topics delete --prefix {self.prefix} --redis-project {self.project} --yes; "
            f"rm -r {self.directory}",
        }

    def remove(self, app: Slipstream) -> dict[str, Any]:
        """Delete the Feast repository, the topics, the Redis keys and the consumer groups; return what was removed.

        Each part is tried even when an earlier one fails (Kafka down still lets the Redis keys go); the first
        failure is raised at the end."""
        shutil.rmtree(self.directory, ignore_errors=True)
        admin = TopicAdmin(app.kafka)
        # A stage that was a static member (SLIPSTREAM_WORKER_ID) stays in its group until its session times out.
        patience = app.engine_settings().session_timeout_ms / 1000 + 5
        steps: dict[str, Callable[[], Any]] = {
            "topics": lambda: len(admin.delete_prefix(self.prefix)),
            "redis_keys": lambda: project_key_count(app.redis_url, self.project, delete=True),
            "consumer_groups": lambda: admin.delete_groups(admin.groups(self.prefix), patience_s=patience),
        }
        removed: dict[str, Any] = {"topic_prefix": self.prefix}
        failures: list[Exception] = []
        for name, step in steps.items():
            try:
                removed[name] = step()
            except Exception as exc:  # noqa: BLE001 - every part is tried; the first failure is raised below
                failures.append(exc)
        if failures:
            raise failures[0]
        left = admin.groups(self.prefix)  # a group whose member outlived the patience (it expires by itself)
        removed["consumer_groups"] = len(removed["consumer_groups"])
        if left:
            removed["consumer_groups_left"] = left
        return removed


def _count(app: Slipstream, topic: str) -> int:
    """Records on ``topic`` (end offsets less start offsets, every partition)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka_config(app.kafka), "group.id": f"count-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _feature_log(app: Slipstream, contracts: Contracts, table: VectorTable) -> None:
    expected = len(table.index)
    with EventConsumer(app.kafka, contracts, ["feature-log"]) as consumer:
        idle = 0
        while idle < 10 and table.received < expected or idle < 2:
            batch = consumer.poll_batch(max_records=20_000, timeout=0.5)
            if batch.events:
                values = [event.value for event in batch.events]
                table.add([str(v["event_id"]) for v in values], [v["features"] for v in values])
            idle = 0 if batch.events else idle + 1


def _compare_online_store(
    feast: FeastRepoConfig, feature_set: FeatureSet, latest_rows: dict[str, pd.DataFrame]
) -> dict[str, Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(feast.repo_dir))
    compared = mismatches = 0
    worst = 0.0
    for view in feature_set.views:
        latest = latest_rows[view.name]
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
    """Run the parity check in a :class:`Throwaway` namespace; the report ends with ``removed`` (counts) or, with
    ``config.keep``, ``kept`` (names, counts and the command that removes them). The namespace is removed (or
    described, when kept) also when the run fails or is interrupted; the error is raised after."""
    tx, labels = _load(config)
    scratch = Throwaway.create(app)
    try:
        report = _run(app, scratch, feature_set, config, tx, labels, say)
    except BaseException:
        with contextlib.suppress(Exception):  # the run's own error is the one to report
            _finish(app, scratch, config.keep, {}, say)
        raise
    return _finish(app, scratch, config.keep, report, say)


def _finish(app: Slipstream, scratch: Throwaway, keep: bool, report: dict[str, Any], say: Say) -> dict[str, Any]:
    with _held_interrupts() as held:
        try:
            if keep:
                report["kept"] = kept = scratch.describe(app)
                say(
                    f"kept {len(kept['topics'])} topics under {scratch.prefix}, {kept['redis_keys']:,} Redis keys of "
                    f"{scratch.project} and {kept['feast_repo']}; remove them with: {kept['remove_with']}"
                )
            else:
                say(f"removing the {scratch.prefix}* topics, the {scratch.project} Redis keys and the Feast repo…")
                report["removed"] = scratch.remove(app)
        except Exception as exc:
            say(f"could not finish cleaning up {scratch.prefix}* / {scratch.project}: {exc}")
            raise
    if held:
        raise KeyboardInterrupt
    return report


def _run(
    app: Slipstream,
    scratch: Throwaway,
    feature_set: FeatureSet,
    config: VerifyConfig,
    tx: pd.DataFrame,
    labels: pd.DataFrame,
    say: Say,
) -> dict[str, Any]:
    from slipstream.features.feast_repo import apply_repo

    contracts = app.with_prefix(scratch.prefix)
    app.apply_topics(contracts)
    feast = scratch.feast_config(app)
    apply_repo(feast, [feature_set])
    say(f"publishing {len(tx):,} transactions and {len(labels):,} labels to {scratch.prefix}*…")
    started = time.perf_counter()
    with EventProducer(app.kafka, contracts, linger_ms=20) as producer:
        for topic, frame in (("transactions", tx), ("labels", labels)):
            for start in range(0, len(frame), PUBLISH_CHUNK):  # records for a chunk at a time: not 1 GB of dicts
                for record in frame_records(frame.iloc[start : start + PUBLISH_CHUNK]):
                    producer.send(topic, record)
    published = time.perf_counter() - started
    say("running the online engine until it has consumed everything…")
    job = EngineJob(
        app.engine_settings(project=scratch.project), scratch.prefix, feature_set.name, workers=config.workers
    )
    started = time.perf_counter()
    chaos: dict[str, Any] | None = None
    if config.chaos is None:
        stats = run_processes(job, threading.Event(), until_idle_s=4.0)
        dead_lettered = sum(s.dead_lettered for s in stats.values())
    else:
        run = ChaosRun(
            job,
            contracts,
            config.chaos,
            expected=len(tx) + len(labels),
            brokers=app.platform,
            broker_ids=tuple(range(1, app.platform_config.brokers + 1)),
            say=say,
        )
        chaos = run.run().to_dict()
        dead_lettered = sum(stage["dead_lettered"] for stage in chaos["stages"].values())
    engine_seconds = time.perf_counter() - started
    say("reading the feature log; computing the offline features a view and a shard of its entities at a time…")
    id_field = feature_set.views[0].source(feature_set.trigger).id_field
    table = VectorTable(tx[id_field].astype(str).tolist(), feature_set.feature_names)
    _feature_log(app, contracts, table)
    checked, latest_rows = check_offline(table, feature_set, {"transactions": tx, "labels": labels})
    del table
    report: dict[str, Any] = {
        "days": config.days,
        "transactions": len(tx),
        "labels": len(labels),
        "publish_seconds": round(published, 2),
        "engine_seconds": round(engine_seconds, 2),
        "workers_per_stage": config.workers,
        "dead_lettered": dead_lettered,
        "dead_letter_topic_records": _count(app, contracts.topic("dead-letter")),
    }
    if chaos is not None:
        report["chaos"] = chaos
    report |= checked
    say("reading the online store through Feast's SDK…")
    report |= _compare_online_store(feast, feature_set, latest_rows)
    return report
