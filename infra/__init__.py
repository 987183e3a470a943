"""Slipstream local platform: start, stop and inspect Kafka (KRaft) and Redis.

>>> from slipstream.infra import Platform, PlatformConfig
>>> platform = Platform(PlatformConfig())      # doctest: +SKIP
>>> platform.up()["kafka"].address              # doctest: +SKIP
'127.0.0.1:9092'
"""

if __name__ != "slipstream.infra":  # one name per module, never two
    _msg = "import slipstream.infra, not infra: Slipstream installs one package, slipstream"
    raise ImportError(_msg)


from slipstream.infra.base import ServiceLauncher, ServiceStatus
from slipstream.infra.config import PlatformConfig
from slipstream.infra.platform import Platform

__all__ = ["Platform", "PlatformConfig", "ServiceLauncher", "ServiceStatus"]
