"""Errors of the local platform (Kafka and Redis launchers).

Branch of the tree rooted at :class:`slipstream.schemas.exceptions.SlipstreamError`::

    InfraError
    ├── InfraConfigError      a PlatformConfig value is invalid (also a ValueError; the message names it)
    ├── JavaNotFoundError     no Java 17+ on PATH / JAVA_HOME (message says how to install it)
    ├── DependencyMissingError  a required program (mvn, redis-server) is missing and cannot be installed
    ├── PortInUseError        a port we need is taken (message names the port and the process)
    ├── ServiceDiedError      a service we started exited (message carries the last lines of its log)
    └── ServiceTimeoutError   a service did not become ready in time
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class InfraError(SlipstreamError):
    """A local service cannot be installed, started, stopped or reached."""


class InfraConfigError(InfraError, ValueError):
    """A :class:`slipstream.infra.config.PlatformConfig` value is invalid; the message names the field and value."""


class JavaNotFoundError(InfraError):
    """No suitable Java runtime (17 or newer) was found."""


class DependencyMissingError(InfraError):
    """A program the platform needs is missing and could not be installed."""


class PortInUseError(InfraError):
    """A port the platform needs is already taken by another process."""


class ServiceDiedError(InfraError):
    """A service the platform started has exited."""


class ServiceTimeoutError(InfraError):
    """A service did not become ready within its deadline."""
