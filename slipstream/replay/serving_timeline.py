"""Which model version was champion when, from ``model-events`` (pure), and the version each scored event used."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

SWAPS = frozenset({"PROMOTED", "ROLLED_BACK"})


def serving_timeline(events: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per model, every change of its champion in topic order: when (the event's Kafka timestamp), which version,
    the action and the version before."""
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("action") not in SWAPS or event.get("alias") != "champion":
            continue
        when = event.get("event_time")
        out.setdefault(str(event["model_name"]), []).append(
            {
                "timestamp_ms": int(event["_timestamp_ms"]),
                "event_time": when.isoformat() if isinstance(when, datetime) else None,
                "version": str(event["version"]),
                "previous_version": event.get("previous_version"),
                "action": event["action"],
            }
        )
    return out


def champion_at(timeline: Mapping[str, list[Mapping[str, Any]]], model: str, timestamp_ms: int) -> str | None:
    """The champion of ``model`` at ``timestamp_ms`` by the timeline; None when no change came before."""
    before = [c for c in timeline.get(model, []) if int(c["timestamp_ms"]) <= timestamp_ms]
    return str(before[-1]["version"]) if before else None
