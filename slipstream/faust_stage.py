"""One feature-engine stage worker under Faust's own command line::

    SLIPSTREAM_ENGINE_STAGE=customer faust -A slipstream.faust_stage worker --without-web -l info

Settings as for every command (``SLIPSTREAM_*``, ``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``);
``SLIPSTREAM_FEATURE_SET`` (default ``fraud``) and ``SLIPSTREAM_ENGINE_STAGE`` (default: the set's first stage) pick
the stage. The worker is the one ``slipstream features run --runtime faust`` starts: the same group, changelog and
outputs, so workers of both commands share a stage's partitions. ``--without-web``: Faust's CLI otherwise starts its
web server on port 6066, which a second worker on the host cannot bind. The app is built when Faust first reads
``app``, so importing the module (tools, tests) connects to nothing.
"""

from __future__ import annotations

import os
from typing import Any

from slipstream.app import Slipstream
from slipstream.exceptions import ConfigError
from slipstream.schemas.contracts import Contracts
from slipstream.settings import load_settings
from slipstream.streams.engine.faust_runtime import FaustStageRunner
from slipstream.streams.engine.topology import topology_for


def stage_app() -> Any:
    """The Faust app of the stage the environment names (a bad name: one line naming it and the choices)."""
    root = Slipstream(load_settings())
    settings = root.engine_settings()
    feature_set = os.environ.get("SLIPSTREAM_FEATURE_SET", "fraud")
    topology = topology_for(feature_set)
    names = [s.name for s in topology.stages]
    stage = os.environ.get("SLIPSTREAM_ENGINE_STAGE", names[0])
    if stage not in names:
        msg = f"SLIPSTREAM_ENGINE_STAGE={stage!r} is not a stage of {feature_set!r}; choose from {', '.join(names)}"
        raise ConfigError(msg)
    contracts = Contracts.default(root.settings.topic_prefix, settings.schema_registry_url)
    return FaustStageRunner(settings, contracts, topology, topology.stage(stage)).make_app()


_app: Any = None


def __getattr__(name: str) -> Any:
    """``app``, built on first access (Faust's ``-A`` reads it): importing this module connects to nothing."""
    global _app
    if name != "app":
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    if _app is None:
        _app = stage_app()
    return _app
