"""The demo's interfaces and values: its options, what it tells its user interface, and the report it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from slipstream.demo.closedloop import POLICY
from slipstream.demo.stats import LiveStats
from slipstream.demo.timeline import DAY_US, REACH_US, Namespace
from slipstream.demo.training import Champion


@dataclass(frozen=True, slots=True)
class DemoOptions:
    rate: float = 200.0
    duration_s: float | None = None
    warmup_days: float = REACH_US / DAY_US
    poison_every: int = 1000
    http_every_s: float = 0.25
    data: Path = Path(".slipstream/data/fraud.parquet")
    keep: bool = False
    port: int | None = None
    drift: str = "none"  # the simulated drift in ``data`` from closedloop.DRIFT_START on: new-fraud-pattern or none
    policy: Path = POLICY  # the closed loop's policy (`slipstream drift` and `slipstream loop` run beside the scorers)
    ui: bool = True  # `slipstream ui` (the dashboard) on a free port


class DemoUI(Protocol):
    def step(self, text: str) -> None:
        """A phase starts."""

    def done(self, text: str) -> None:
        """A phase ended well."""

    def warm(self, applied: int, total: int) -> None:
        """Warm-up progress: events the engine applied so far."""

    def live(self, stats: LiveStats) -> None:
        """Refresh the live view (about twice a second)."""


@dataclass
class DemoReport:
    namespace: Namespace
    timings: dict[str, float] = field(default_factory=dict)
    champion: Champion | None = None
    stats: LiveStats = field(default_factory=LiveStats)
    exit_codes: dict[str, int] = field(default_factory=dict)
    left_running: list[int] = field(default_factory=list)
    cleaned: bool = False
    http_port: int = 0
    live: bool = False
    error: str | None = None
    # CPU seconds per process (child name, "demo", "engine") to the start of live traffic ("startup") and during it
    cpu_s: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "prefix": self.namespace.prefix,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "registered_version": self.champion.version if self.champion else None,
            "challenger_version": self.champion.challenger.version
            if self.champion and self.champion.challenger
            else None,
            "model": s.model,
            "produced": s.produced,
            "labels": s.labels,
            "scored": s.scored,
            "flagged": s.flagged,
            "frauds_scored": s.frauds_scored,
            "caught": s.caught,
            "precision": s.precision,
            "recall": s.recall,
            "e2e_p50_ms": s.percentile("e2e_ms", 50),
            "e2e_p99_ms": s.percentile("e2e_ms", 99),
            "http_requests": len(s.http_ms),
            "http_p50_ms": s.percentile("http_ms", 50),
            "http_p99_ms": s.percentile("http_ms", 99),
            "http_model": (s.http_last.get("model") or {}).get("version"),
            "freshness_p50_ms": s.percentile("freshness_ms", 50),
            "project": self.namespace.project,
            "poisoned": s.poisoned,
            "dead_letters": dict(s.dead_letters),
            "reco": s.reco.summary(),
            "shadow": s.verdicts.summary(),
            "loop": s.loop.summary(),
            "cpu_s": {phase: {k: round(v, 2) for k, v in used.items()} for phase, used in self.cpu_s.items()},
            "exit_codes": self.exit_codes,
            "left_running": self.left_running,
            "cleaned": self.cleaned,
            "error": self.error,
        }
