"""``slipstream replay``: a slice, replayed through the production engine and scorer on a throwaway platform.

1. The slice is opened and every member's checksum verified; the versions asked for (``--model``, ``--challenger``)
   and every schema a value was written with are checked before anything starts.
2. A throwaway Kafka + Redis starts (:func:`slipstream.infra.throwaway.start_throwaway`: testcontainers when a Docker
   engine answers, else the local launcher on free ports), or a given platform is used under a fresh namespace.
3. The topics are created with the recorded partition counts (retention unlimited: replayed records are old).
4. The history is published and the feature engine (one process per stage, as ``features run``) rebuilds the state
   the window starts from.
5. The window is published in gated chunks through the engine and the Kafka scorer (:mod:`slipstream.replay.feed`),
   with the recorded models (from the slice) swapped in where the recording says they served.
6. The replayed predictions are read back and compared with the recorded ones (:mod:`slipstream.replay.diff`); with
   a challenger, a backtest (:mod:`slipstream.replay.backtest`). The platform is torn down on every way out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from slipstream.app import Slipstream
from slipstream.features.definitions import feature_sets
from slipstream.models.registry import ModelRegistry
from slipstream.replay.backtest import backtest
from slipstream.replay.diff import DiffSummary, Tolerance, diff_predictions
from slipstream.replay.exceptions import ReplayError, SliceFormatError
from slipstream.replay.feed import WindowFeed, count, merged
from slipstream.replay.kafka_io import Reproducer, raw_producer
from slipstream.replay.outputs import read_predictions, recorded_predictions
from slipstream.replay.pipeline import Pipeline
from slipstream.replay.scope import OUTPUTS, gate_rules
from slipstream.replay.slice_file import SliceReader
from slipstream.replay.slice_models import SliceModels
from slipstream.replay.truth import against_offline, offline_features
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import TopicAdmin
from slipstream.settings import Settings
from slipstream.streams.engine.topology import engine_topics

Backend = Literal["auto", "testcontainers", "local"]
Progress = Callable[[str, int, int | None], None]
TRIGGER = "transactions"


class PlatformLike(Protocol):
    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def redis_url(self) -> str: ...


def _quiet(_task: str, _done: int, _total: int | None) -> None:
    return None


@dataclass(frozen=True)
class ReplayOptions:
    backend: Backend = "auto"
    model: str | None = None  # serve this version of the fraud model throughout (a what-if, not a reproduction)
    challenger: str | None = None  # backtest this version on the replayed inputs
    speed: float | None = None  # None: as fast as it goes; N: N times the recorded pace
    tolerance: Tolerance = field(default_factory=Tolerance)
    start_engine: bool = False  # start a Docker engine (root) when none answers
    offline_check: bool = False  # also compare both sides with the offline engine's features (which side is right)


@dataclass
class ReplayResult:
    slice_path: Path
    mode: str  # "reproduce" or "what-if"
    backend: str
    summary: DiffSummary
    tolerance: Tolerance
    timings: dict[str, float]
    counts: dict[str, int]
    models: dict[str, str]
    backtest: dict[str, Any] | None = None
    offline: dict[str, Any] | None = None
    replayed: list[dict[str, Any]] = field(default_factory=list, repr=False)
    recorded: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """A reproduction with no difference beyond the tolerance (a what-if is always ok: it is a comparison)."""
        return self.mode != "reproduce" or self.summary.failing == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": str(self.slice_path),
            "mode": self.mode,
            "ok": self.ok,
            "backend": self.backend,
            "diff": self.summary.to_dict(self.tolerance),
            "timings_s": self.timings,
            "counts": self.counts,
            "models": self.models,
            "backtest": self.backtest,
            "offline_check": self.offline,
        }


def replay_slice(
    path: Path,
    options: ReplayOptions,
    settings: Settings,
    *,
    platform: PlatformLike | None = None,
    registry: ModelRegistry | None = None,
    progress: Progress = _quiet,
) -> ReplayResult:
    """Replay the slice at ``path``; ``platform`` given: replay there under a fresh namespace (kept running)."""
    reader = SliceReader(path)
    try:
        progress("verifying the slice", 0, None)
        reader.verify()
        recorded = recorded_predictions(reader, Contracts.default())
        models = _models(reader, options, recorded, registry)
        _check_schemas(reader, Contracts.default())
        if platform is not None:
            return _replay(reader, options, settings, platform, "given", 0.0, models, recorded, progress)
        from slipstream.infra.throwaway import start_throwaway

        say = lambda text: progress(text, 0, None)  # noqa: E731 - a one-line adapter
        with start_throwaway(options.backend, progress=say, start_engine=options.start_engine) as thrown:
            return _replay(
                reader, options, settings, thrown, thrown.backend, thrown.start_s, models, recorded, progress
            )
    finally:
        reader.close()


def _models(
    reader: SliceReader, options: ReplayOptions, recorded: list[dict[str, Any]], registry: ModelRegistry | None
) -> SliceModels:
    """The model source, with the champion at the window's start: the version of the first recorded prediction
    (else the timeline's champion); every version asked for is loaded now, so a bad one fails before any work."""
    note = reader.manifest.get("settings", {})
    model = str(note.get("fraud_model", "fraud"))
    first = recorded[0]["model_version"] if recorded else None
    if first is None:
        changes = reader.manifest.get("serving", {}).get(model, [])
        first = changes[-1]["version"] if changes else None
    champion = options.model or first
    if champion is None:
        msg = f"slice {str(reader.path)!r} names no {model!r} version that served, and no --model was given"
        raise ReplayError(msg)
    source = SliceModels(reader, {model: str(champion)}, registry)
    versions = {str(champion)} | {str(p["model_version"]) for p in recorded if options.model is None}
    if options.challenger:
        versions.add(options.challenger)
    for version in sorted(versions):
        source.load_version(model, version)
    return source


def _check_schemas(reader: SliceReader, contracts: Contracts) -> None:
    known = contracts.registry.by_fingerprint
    for fp, member in reader.manifest.get("schemas", {}).items():
        if bytes.fromhex(fp) not in known:
            msg = f"slice {str(reader.path)!r} holds values written with {member} (fingerprint {fp}), unknown here"
            raise SliceFormatError(msg)


def _catalog(reader: SliceReader, prefix: str) -> Contracts:
    """The contract topics, plus every feature set's internal ones, with the recorded partition counts."""
    base = Contracts.default().with_topics(engine_topics(feature_sets().values()))
    recorded = reader.manifest["topics"]
    widest = max((int(t["partitions"]) for t in recorded.values()), default=1)
    specs = []
    for spec in base.catalog.specs:
        partitions = int(recorded[spec.name]["partitions"]) if spec.name in recorded else spec.partitions
        if spec.value_schema is None:  # the engine's internal topics: as wide as the widest input
            partitions = max(partitions, widest)
        specs.append(dataclasses.replace(spec, partitions=partitions, retention_ms=-1))
    return Contracts(TopicCatalog(prefix, tuple(specs)), base.registry, base.framing)


def _replay(
    reader: SliceReader,
    options: ReplayOptions,
    settings: Settings,
    platform: PlatformLike,
    backend: str,
    start_s: float,
    models: SliceModels,
    recorded: list[dict[str, Any]],
    progress: Progress,
) -> ReplayResult:
    manifest = reader.manifest
    note = manifest.get("settings", {})
    lateness_s = float(note.get("lateness_s", settings.lateness_s))
    run_id = uuid.uuid4().hex[:10]
    prefix = f"replay-{run_id}."
    project = f"replay_{run_id}"
    with tempfile.TemporaryDirectory(prefix="slipstream-replay-") as tmp:
        local = settings.model_copy(
            update={
                "kafka_bootstrap_servers": platform.bootstrap_servers,
                "kafka_security_protocol": "PLAINTEXT",  # the throwaway platform's broker, not production's login
                "kafka_sasl": False,
                "redis_url": SecretStr(platform.redis_url),
                "topic_prefix": prefix,
                "state_dir": Path(tmp),
                "feast_project": project,
                "lateness_s": lateness_s,
                "fraud_model": str(note.get("fraud_model", settings.fraud_model)),
            }
        )
        app = Slipstream(local)
        contracts = _catalog(reader, prefix)
        TopicAdmin(platform.bootstrap_servers).apply(contracts.catalog)
        sets = list(manifest.get("feature_sets", []))
        pipeline = Pipeline(app, contracts, sets, models, project)
        timings: dict[str, float] = {"platform_start_s": start_s}
        try:
            pipeline.start_engine()
            producer = raw_producer(platform.bootstrap_servers)
            reproducer = Reproducer(producer, contracts.topic)
            t0 = time.monotonic()
            history = count(reader, "history")
            for i, record in enumerate(merged(reader, "history")):
                reproducer.send(record)
                if i % 20_000 == 0:
                    progress("history: publishing", i, history)
            reproducer.flush()
            timings["history_publish_s"] = time.monotonic() - t0
            timings["history_engine_s"] = pipeline.wait_engine(
                history, lambda done, total: progress("history: feature engine", done, total)
            )
            pipeline.start_scorer()
            window = count(reader, "slice")
            rules = gate_rules(sets)
            feed = WindowFeed(
                pipeline,
                reproducer,
                {topic: contracts.serde(topic) for topic in rules},
                rules,
                TRIGGER,
                next(o.input_id_field for o in OUTPUTS if o.input_topic == TRIGGER),
                lateness_s=lateness_s,
                versions=None if options.model else {str(p["event_id"]): str(p["model_version"]) for p in recorded},
                model=local.fraud_model,
                speed=options.speed,
                on_progress=lambda done: progress("window: engine + scorer", done, window),
            )
            stats = feed.run(merged(reader, "slice"))
            pipeline.finish_scoring()
            timings["window_s"] = stats.wall_s
            scored = pipeline.stream.stats.scored
            dead = pipeline.stream.stats.invalid
            replayed = read_predictions(platform.bootstrap_servers, contracts, expected=scored)
        finally:
            pipeline.close()
            _cleanup(platform, prefix)
    summary = diff_predictions(recorded, replayed, options.tolerance)
    events = stats.scored_inputs
    timings["events_per_s"] = stats.records / stats.wall_s if stats.wall_s > 0 else 0.0
    challenger = None
    if options.challenger:
        labels = list(reader.records("slice", "labels")) + list(reader.records("history", "labels"))
        challenger = backtest(replayed, models.load_version(local.fraud_model, options.challenger), labels, contracts)
    offline = None
    if options.offline_check:
        progress("offline engine: the third opinion", 0, None)
        truth = offline_features(reader, contracts, feature_sets()[sets[0]]) if sets else {}
        offline = {
            "recorded": against_offline(recorded, truth, options.tolerance),
            "replayed": against_offline(replayed, truth, options.tolerance),
        }
    return ReplayResult(
        reader.path,
        "what-if" if options.model else "reproduce",
        backend,
        summary,
        options.tolerance,
        timings,
        {
            "history_records": history,
            "window_records": stats.records,
            "window_scored_inputs": events,
            "chunks": stats.chunks,
            "swaps": stats.swaps,
            "engine_waits": stats.engine_waits,
            "dead_lettered": dead,
        },
        dict(models.sources),
        challenger,
        offline,
        replayed,
        recorded,
    )


def _cleanup(platform: PlatformLike, prefix: str) -> None:
    """On a given (shared) platform, the replay's topics go; a throwaway one is removed whole by its owner."""
    admin = TopicAdmin(platform.bootstrap_servers)
    with contextlib.suppress(SlipstreamError):  # best effort: a throwaway broker goes anyway
        admin.delete(admin.matching(prefix))
