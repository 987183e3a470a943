"""Record a window of production into a slice, and replay it through the same engine and scorer with a diff.

>>> from slipstream.replay import ReplayOptions, replay_slice   # doctest: +SKIP
>>> result = replay_slice(Path("incident.slice"), ReplayOptions(), settings)   # doctest: +SKIP
>>> result.ok, result.summary.failing   # doctest: +SKIP
(True, 0)

The names are imported on first use: the pytest plugin (:mod:`slipstream.replay.pytest_plugin`) is loaded by every
pytest run that has Slipstream installed, and must not pull in Kafka, MLflow and ONNX Runtime to do so.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "RecordPlan": "slipstream.replay.record",
    "Recorder": "slipstream.replay.record",
    "ReplayOptions": "slipstream.replay.run",
    "ReplayResult": "slipstream.replay.run",
    "SliceReader": "slipstream.replay.slice_file",
    "Tolerance": "slipstream.replay.diff",
    "replay_slice": "slipstream.replay.run",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        msg = f"module 'slipstream.replay' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(home), name)
