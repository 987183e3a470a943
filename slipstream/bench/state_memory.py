"""`slipstream bench state-memory`: the engine's memory against the number of entities it holds.

Each measurement runs in a fresh process (spawned), which feeds the fraud set's customer stage — the pure
:class:`~slipstream.streams.engine.processor.StageProcessor`, no Kafka or Redis — with ``per_day`` transactions a day
per entity, and reports its resident set before and after (``VmRSS``) and its peak (``VmHWM``).

- ``steady``: ``N`` entities all active for ``days`` (past the 30-day reach, so every ring is full): memory per entity
  at the simulator's density.
- ``churn``: ``N`` entities over ``days``, each active only during its own ``active_days`` slot, as cards come and
  go; with eviction the stage holds the live entities only, without it every entity ever seen.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DAY_US = 86_400_000_000
START_US = 1_522_540_800_000_000  # 2018-04-01, the simulator's first day


@dataclass(frozen=True, slots=True)
class StateMemoryConfig:
    entities: tuple[int, ...] = (1_000, 5_000, 20_000)
    days: float = 40.0
    per_day: float = 2.0  # the Fraud Handbook simulation: 1.75 M transactions / 183 days / 5,000 cards ~ 1.9
    churn_days: float = 150.0
    active_days: float = 15.0


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _events(n: int, days: float, per_day: float, slot_days: float | None, seed: int) -> list[tuple[int, int]]:
    """(time, entity) in time order: each entity active all along, or only during a slot of its own."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    out: list[tuple[int, int]] = []
    for entity in range(n):
        if slot_days is None:
            lo, hi = 0.0, days
        else:
            lo = rng.uniform(0, days - slot_days)
            hi = lo + slot_days
        count = max(1, round((hi - lo) * per_day))
        out += [(START_US + int(rng.uniform(lo, hi) * DAY_US), entity) for _ in range(count)]
    out.sort()
    return out


def _measure(n: int, days: float, per_day: float, slot_days: float | None, evict: bool) -> dict[str, Any]:
    from slipstream.streams.engine.processor import StageProcessor
    from slipstream.streams.engine.topology import topology_for

    topology = topology_for("fraud")
    processor = StageProcessor(
        topology, topology.stage("customer"), lateness_us=2_000_000, evict_bucket_us=3_600_000_000 if evict else None
    )
    events = _events(n, days, per_day, slot_days, seed=n)
    gc.collect()
    before = _rss_kb("VmRSS")
    now = datetime.now(UTC)
    held_peak = 0
    for i, (time_us, entity) in enumerate(events):
        record = {"transaction_id": i, "event_time": time_us, "customer_id": entity, "terminal_id": 1, "amount": 1.5}
        processor.on_event(entity % 3, "transactions", record)
        if i % 2000 == 1999:
            processor.drain(now)
            processor.committed({0, 1, 2})
            held_peak = max(held_peak, len(processor.states))
    processor.drain(now)
    del events
    gc.collect()
    after = _rss_kb("VmRSS")
    held_events = sum(len(ring) for state in processor.states.values() for ring in state.rings.values())
    states = len(processor.states)
    return {
        "entities_seen": n,
        "states_held": states,
        "states_held_peak": max(held_peak, states),
        "events_held": held_events,
        "evicted": processor.evicted,
        "rss_state_mb": round((after - before) / 1024, 1),
        "bytes_per_state": round((after - before) * 1024 / states) if states else None,
        "vm_hwm_mb": round(_rss_kb("VmHWM") / 1024, 1),
    }


def _child(args: tuple[int, float, float, float | None, bool], queue: Any) -> None:
    queue.put(_measure(*args))


def _in_fresh_process(*args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args, queue))
    proc.start()
    result: dict[str, Any] = queue.get(timeout=1800)
    proc.join(60)
    return result


def run_state_memory_bench(config: StateMemoryConfig) -> dict[str, Any]:
    steady = [
        {"mode": "steady", **_in_fresh_process(n, config.days, config.per_day, None, True)} for n in config.entities
    ]
    n = config.entities[-1]
    churn = [
        {
            "mode": "churn",
            "evict": evict,
            **_in_fresh_process(n, config.churn_days, config.per_day, config.active_days, evict),
        }
        for evict in (False, True)
    ]
    return {
        "per_day": config.per_day,
        "steady_days": config.days,
        "churn_days": config.churn_days,
        "active_days": config.active_days,
        "steady": steady,
        "churn": churn,
    }


__all__ = ["StateMemoryConfig", "run_state_memory_bench"]
