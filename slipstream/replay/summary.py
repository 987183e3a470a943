"""``slipstream record inspect``: what a slice holds, from its manifest (and, on request, its verified checksums)."""

from __future__ import annotations

from typing import Any

from slipstream.replay.slice_file import SliceReader


def summarize(reader: SliceReader) -> dict[str, Any]:
    m = reader.manifest
    members = m["members"]
    history = m.get("history", {}).get("topics", {})
    return {
        "slice": str(reader.path),
        "format_version": m["format_version"],
        "created_at": m.get("created_at"),
        "window": m.get("window"),
        "source": m.get("source"),
        "topics": {
            name: {"partitions": t["partitions"], "records": t["records"]} for name, t in m.get("topics", {}).items()
        },
        "added_sources": m.get("added_sources", []),
        "feature_sets": m.get("feature_sets", []),
        "undecodable_in_window": m.get("undecodable_in_window", {}),
        "history": {
            name: {"records": h["records"], "reach_s": h["reach_s"], "complete": h["complete"]}
            for name, h in history.items()
        },
        "outputs": {k: v for k, v in m.get("outputs", {}).items() if isinstance(v, dict)},
        "models": m.get("models", {}),
        "serving": m.get("serving", {}),
        "model_events": m.get("model_events", 0),
        "members": len(members),
        "bytes": reader.path.stat().st_size,
        "records": sum(int(v["records"]) for v in members.values()),
    }
