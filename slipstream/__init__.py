"""Slipstream: real-time ML on Kafka — streaming features into Feast/Redis, ONNX scoring with lineage.

The names a user needs, in one place::

    from slipstream import Settings, Slipstream                      # the settings and the composition root
    from slipstream import Contracts, EventProducer, EventConsumer   # topics, Avro contracts, typed clients
    from slipstream import FeatureSet, FeatureView, Entity, SourceSpec, Aggregate, Agg, Window, Ratio, ...
    from slipstream import SlipstreamError                           # the root of every error Slipstream raises

The parts are subpackages: ``slipstream.schemas`` (contracts), ``slipstream.features`` (the feature language and
both engines' shared core), ``slipstream.streams`` (stream processors), ``slipstream.models`` (training, ONNX, the
registry), ``slipstream.serving`` (the scorer) and ``slipstream.infra`` (the local platform). Importing this package
loads none of them: each name is imported on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Importing Feast sets PROMETHEUS_MULTIPROC_DIR to a temporary directory of its own (for its feature server's forked
# workers). prometheus_client reads that variable when it is first imported and then keeps every metric value in
# files shared by every registry of the process: a scorer's counters would carry over into the next scorer built in
# the same process. A variable Feast left to a child process is dropped, and prometheus_client is imported first,
# so its mode is chosen before Feast can be imported. A directory the user set is kept.
for _name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
    if os.path.basename(os.environ.get(_name, "")).startswith("feast_metrics_"):
        del os.environ[_name]
import prometheus_client.values  # noqa: E402, F401

# MLflow's client sends usage telemetry to an outside server (config.mlflow-telemetry.io) when its registry is used.
# Slipstream's processes talk to the services they are configured for and nothing else: telemetry is off unless the
# user turns it on (MLFLOW_DISABLE_TELEMETRY=false).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

if TYPE_CHECKING:
    from slipstream.app import Slipstream
    from slipstream.features.base import (
        Agg,
        Aggregate,
        Entity,
        FeatureSet,
        FeatureView,
        Ratio,
        RequestFeature,
        SourceSpec,
        Where,
        Window,
    )
    from slipstream.schemas.contracts import Contracts
    from slipstream.schemas.exceptions import SlipstreamError
    from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
    from slipstream.settings import Settings

_HOME = {
    "Slipstream": "slipstream.app",
    "Settings": "slipstream.settings",
    "Contracts": "slipstream.schemas.contracts",
    "EventProducer": "slipstream.schemas.transport",
    "EventConsumer": "slipstream.schemas.transport",
    "TopicAdmin": "slipstream.schemas.transport",
    "SlipstreamError": "slipstream.schemas.exceptions",
    **{
        name: "slipstream.features.base"
        for name in (
            "Agg",
            "Aggregate",
            "Entity",
            "FeatureSet",
            "FeatureView",
            "Ratio",
            "RequestFeature",
            "SourceSpec",
            "Where",
            "Window",
        )
    },
}

__all__ = [
    "Agg",
    "Aggregate",
    "Contracts",
    "Entity",
    "EventConsumer",
    "EventProducer",
    "FeatureSet",
    "FeatureView",
    "Ratio",
    "RequestFeature",
    "Settings",
    "Slipstream",
    "SlipstreamError",
    "SourceSpec",
    "TopicAdmin",
    "Where",
    "Window",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        msg = f"module 'slipstream' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
