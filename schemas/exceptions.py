"""Slipstream's exception tree.

Every error Slipstream raises on purpose derives from :class:`SlipstreamError`, so a caller can
catch the whole family in one clause. The root lives here, on the ground floor (``schemas/``), because
every other part stands on it; each package adds its own branch in its own ``exceptions.py``::

    SlipstreamError
    ├── ConfigError                    (slipstream.exceptions)  invalid settings, named by variable
    ├── SchemaError                    (schemas)  a schema file or contract is wrong
    │   ├── SchemaNotFoundError        unknown schema name or fingerprint
    │   └── IncompatibleSchemaError    a change would break existing readers or writers
    ├── SerializationError             (schemas)  a record does not fit its schema
    ├── DecodeError                    (schemas)  bytes are not a valid event (becomes a dead letter)
    ├── TopicError                     (schemas)  a topic declaration cannot be applied
    ├── ProduceError                   (schemas)  the broker refused or never acknowledged a record
    └── InfraError                     (infra)    a local service cannot be installed, started or reached
        ├── JavaNotFoundError
        ├── PortInUseError
        ├── ServiceDiedError
        └── ServiceTimeoutError

Messages quote the bad value, so a log line alone says what to fix.
"""

from __future__ import annotations


class SlipstreamError(Exception):
    """Root of every error Slipstream raises on purpose."""


class SchemaError(SlipstreamError):
    """A schema file or a schema contract is wrong."""


class SchemaNotFoundError(SchemaError):
    """No schema is known under that name or fingerprint."""


class IncompatibleSchemaError(SchemaError):
    """A schema change would break readers or writers of an earlier released version."""


class SerializationError(SlipstreamError):
    """A record does not fit the schema it is encoded with."""


class DecodeError(SlipstreamError):
    """Bytes read from a topic are not a valid event; the pipeline dead-letters them.

    ``error_type`` is the machine-readable class carried into the dead-letter envelope:
    ``undecodable`` (not framed / unknown schema), ``schema_mismatch`` (the body does not decode), or
    ``invalid_field`` (decodes, but a value is out of its domain).
    """

    def __init__(self, message: str, error_type: str = "undecodable") -> None:
        super().__init__(message)
        self.error_type = error_type


class TopicError(SlipstreamError):
    """A topic declaration cannot be applied to the broker."""


class ProduceError(SlipstreamError):
    """The broker refused a record or never acknowledged it."""
