"""Slipstream's exception tree.

Every error Slipstream raises on purpose derives from :class:`SlipstreamError`, so a caller can
catch the whole family in one clause. The root lives here, on the ground floor (``schemas/``), because
every other part stands on it; each package adds its own branch in its own ``exceptions.py`` (whose docstring
draws that branch). The whole tree, one class a line with the module that defines it::

    SlipstreamError                    (slipstream.schemas.exceptions)  the root: catch the whole family here
    ├── ConfigError                    (slipstream.exceptions)  invalid settings, named by variable
    ├── InputError                     (slipstream.exceptions)  a command's file, column or option value is wrong
    ├── SchemaError                    (slipstream.schemas.exceptions)  a schema file or contract is wrong
    │   ├── SchemaNotFoundError        (slipstream.schemas.exceptions)  unknown schema name or fingerprint
    │   └── IncompatibleSchemaError    (slipstream.schemas.exceptions)  a change would break readers or writers
    ├── SerializationError             (slipstream.schemas.exceptions)  a record does not fit its schema
    │   ├── FieldTypeError             (slipstream.schemas.exceptions)  a value of the wrong Avro type
    │   ├── FieldNameError             (slipstream.schemas.exceptions)  a field missing (no default) or unknown
    │   ├── LongOverflowError          (slipstream.schemas.exceptions)  an integer beyond an Avro long
    │   └── EnvelopeError              (slipstream.schemas.exceptions)  a dead-letter envelope with a naive time
    ├── DecodeError                    (slipstream.schemas.exceptions)  bytes are not a valid event (a dead letter)
    ├── DeadLetterError                (slipstream.schemas.exceptions)  a dead-letter filter, id or time is wrong
    ├── TopicError                     (slipstream.schemas.exceptions)  a topic declaration cannot be applied
    ├── ProduceError                   (slipstream.schemas.exceptions)  the broker refused or never acknowledged
    ├── KafkaAccessError               (slipstream.schemas.exceptions)  Kafka refused the login or the TLS handshake
    ├── KafkaConfigError               (slipstream.schemas.exceptions)  a client cannot use this Kafka connection
    ├── FeatureError                   (slipstream.features.exceptions)  features cannot be defined, stored or read
    │   ├── DefinitionError            (slipstream.features.exceptions)  a feature declaration is inconsistent
    │   ├── LayoutError                (slipstream.features.exceptions)  a value does not fit Feast's layout
    │   ├── OnlineStoreError           (slipstream.features.exceptions)  Redis refused or lost a write or read
    │   └── StateFormatError           (slipstream.features.exceptions)  window state not encodable or decodable
    ├── StreamsError                   (slipstream.streams.exceptions)  a stream processor cannot go on
    │   ├── PublishError               (slipstream.streams.exceptions)  a publish option is invalid
    │   ├── EngineError                (slipstream.streams.engine.exceptions)  an engine stage failed
    │   │   ├── TopologyError          (slipstream.streams.engine.exceptions)  a feature set it cannot host
    │   │   ├── StateError             (slipstream.streams.engine.exceptions)  state not restored or persisted
    │   │   ├── LagError               (slipstream.streams.engine.exceptions)  a group's lag could not be read
    │   │   └── InternalMessageError   (slipstream.streams.engine.exceptions)  an engine-internal message is not JSON
    │   └── SimulationError            (slipstream.streams.simulate.exceptions)  a simulator cannot run
    │       ├── SimulationConfigError  (slipstream.streams.simulate.exceptions)  a config value out of range
    │       └── SimulationInputError   (slipstream.streams.simulate.exceptions)  a bad frame, id array or time
    ├── ModelError                     (slipstream.models.exceptions)  a model cannot be trained or applied
    │   ├── InvalidInputError          (slipstream.models.exceptions)  a frame lacks columns or is out of domain
    │   │   └── MissingFeaturesError   (slipstream.models.exceptions)  a frame to score lacks features
    │   ├── UnknownOptionError         (slipstream.models.exceptions)  an option names no known variant
    │   ├── OnnxExportError            (slipstream.models.exceptions)  a booster cannot be converted to ONNX
    │   ├── ParityError                (slipstream.models.exceptions)  ONNX and LightGBM disagree
    │   └── RegistryError              (slipstream.models.exceptions)  the registry refused or lost something
    │       ├── ArtifactCorruptError   (slipstream.models.exceptions)  an artifact's sha256 is not registered
    │       └── FeatureMismatchError   (slipstream.models.exceptions)  features differ from the definitions
    ├── ServingError                   (slipstream.serving.exceptions)  a request cannot be scored
    │   ├── InvalidRequestError        (slipstream.serving.exceptions)  a malformed request (HTTP 422)
    │   ├── FeaturesUnavailableError   (slipstream.serving.exceptions)  the online store unreadable (HTTP 503)
    │   ├── ModelUnavailableError      (slipstream.serving.exceptions)  no model loaded yet (HTTP 503)
    │   └── ModelRefusedError          (slipstream.serving.exceptions)  a candidate model failed its checks
    ├── MonitoringError                (slipstream.monitoring.exceptions)  a model watcher cannot go on
    │   ├── ShadowError                (slipstream.monitoring.exceptions)  the shadow consumer cannot go on
    │   ├── JoinError                  (slipstream.monitoring.exceptions)  the label joiner cannot go on
    │   └── ReportError                (slipstream.monitoring.exceptions)  realised performance not computable
    ├── InfraError                     (slipstream.infra.exceptions)  a local service cannot be run or reached
    │   ├── InfraConfigError           (slipstream.infra.exceptions)  a PlatformConfig value is invalid
    │   ├── JavaNotFoundError          (slipstream.infra.exceptions)  no Java 17+ found
    │   ├── DependencyMissingError     (slipstream.infra.exceptions)  mvn or redis-server missing, not installable
    │   ├── PortInUseError             (slipstream.infra.exceptions)  a port we need is taken
    │   ├── ServiceDiedError           (slipstream.infra.exceptions)  a service we started exited
    │   └── ServiceTimeoutError        (slipstream.infra.exceptions)  a service was not ready in time
    ├── DemoError                      (slipstream.demo.exceptions)  the demo cannot go on
    ├── DrillError                     (slipstream.drill.exceptions)  a drill cannot start or go on
    ├── ChaosError                     (slipstream.chaos.exceptions)  a chaos plan cannot run or went wrong
    ├── ReplayError                    (slipstream.replay.exceptions)  record or replay cannot go on
    │   ├── SliceFormatError           (slipstream.replay.exceptions)  not a slice, damaged, or an unknown format
    │   ├── ToleranceError             (slipstream.replay.exceptions)  a diff tolerance that is not a number >= 0
    │   └── ReplayMismatch             (slipstream.replay.exceptions)  replayed predictions differ from recorded ones
    └── BenchError                     (slipstream.bench.exceptions)  a benchmark cannot be run or measured
        ├── BenchConfigError           (slipstream.bench.exceptions)  an option out of range (rate, --scorers)
        ├── ResponseFormatError        (slipstream.bench.exceptions)  the server's reply is not HTTP/1.1
        ├── LoadGeneratorError         (slipstream.bench.exceptions)  the load-generator process failed
        ├── BenchRunError              (slipstream.bench.exceptions)  a process under test exited, data ran out
        └── BenchTimeoutError          (slipstream.bench.exceptions)  a process under test was not ready in time

Some classes also derive from a built-in, so that code which caught the built-in before the class existed (a
caller's ``except ValueError``, a test's ``pytest.raises(KeyError)``) still catches it:
``ValueError``: EnvelopeError, LayoutError, StateFormatError, PublishError, InternalMessageError,
SimulationConfigError, SimulationInputError, InvalidRequestError, InfraConfigError, BenchConfigError,
ResponseFormatError; ``TypeError``: FieldTypeError; ``KeyError``: FieldNameError; ``OverflowError``:
LongOverflowError; ``TimeoutError``: BenchTimeoutError.

Not in the tree, because they are no errors: ``DemoStopped`` (slipstream.demo.exceptions) unwinds a demo stopped
with Ctrl-C before it went live. ``tests/unit/test_exception_tree.py`` keeps this drawing and the code in step, and
fails on a bare ``raise ValueError`` (or ``TypeError``, ``RuntimeError``, ``KeyError``, ``Exception``) in library
code.

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


class FieldTypeError(SerializationError, TypeError):
    """The compiled Avro writer met a value of the wrong type for its field (a str for a long, a naive datetime).

    Also a ``TypeError``, as it was before it had a class of its own (:class:`~slipstream.schemas.serde.AvroSerde`
    catches anything the compiled writer raises and asks fastavro to write the record or explain it)."""


class FieldNameError(SerializationError, KeyError):
    """The compiled Avro writer met a record lacking a field that has no default, or holding one the schema lacks.

    Also a ``KeyError``, as it was before it had a class of its own (the serde falls back to fastavro on it)."""


class LongOverflowError(SerializationError, OverflowError):
    """An integer does not fit in an Avro ``long`` (64-bit); the message quotes it. Also an ``OverflowError``."""


class EnvelopeError(SerializationError, ValueError):
    """A dead-letter envelope cannot be built: its ``failed_at`` is naive (event time is always timezone-aware).

    Also a ``ValueError``, as it was before it had a class of its own."""


class DecodeError(SlipstreamError):
    """Bytes read from a topic are not a valid event; the pipeline dead-letters them.

    ``error_type`` is the machine-readable class carried into the dead-letter envelope:
    ``undecodable`` (not framed / unknown schema), ``schema_mismatch`` (the body does not decode), or
    ``invalid_field`` (decodes, but a value is out of its domain).
    """

    def __init__(self, message: str, error_type: str = "undecodable") -> None:
        super().__init__(message)
        self.error_type = error_type


class DeadLetterError(SlipstreamError):
    """A dead-letter query cannot be applied: an unknown error type, a malformed envelope id (``partition:offset``),
    a time that is neither ISO-8601 with a timezone nor relative (``2h``), a bad regular expression."""


class TopicError(SlipstreamError):
    """A topic declaration cannot be applied to the broker."""


class KafkaAccessError(SlipstreamError):
    """Kafka refused the SASL login or the TLS handshake (a wrong password, an unknown CA): no retry cures it, so
    the client stops at once. The message names Kafka and its bootstrap servers, never a secret."""


class KafkaConfigError(SlipstreamError):
    """A Kafka client cannot use the connection's security (the Faust runtime and OAUTHBEARER)."""


class ProduceError(SlipstreamError):
    """The broker refused a record or never acknowledged it."""
