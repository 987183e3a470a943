"""Slipstream local platform: start, stop and inspect Kafka (KRaft) and Redis.

>>> from infra import Platform, PlatformConfig
>>> platform = Platform(PlatformConfig())      # doctest: +SKIP
>>> platform.up()["kafka"].address              # doctest: +SKIP
'127.0.0.1:9092'
"""

from slipstream.infra.base import ServiceLauncher, ServiceStatus
from slipstream.infra.config import PlatformConfig
from slipstream.infra.platform import Platform

__all__ = ["Platform", "PlatformConfig", "ServiceLauncher", "ServiceStatus"]
