"""Errors of the benchmarks. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

BenchError                          a benchmark cannot be run or measured
├── BenchConfigError                an option is out of range: a rate, a duration, --scorers (also a ValueError)
├── ResponseFormatError             the server's bytes are not an HTTP/1.1 response to measure (also a ValueError)
├── LoadGeneratorError              the load-generator process died or sent something other than its result
├── BenchRunError                   a process under test exited, a topic is not set up as measured, data ran out
└── BenchTimeoutError               a process under test was not ready in time (also a TimeoutError)
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class BenchError(SlipstreamError):
    """Root of the benchmarks' errors."""


class BenchConfigError(BenchError, ValueError):
    """A benchmark option is out of range (a rate that is not > 0, a negative duration, more scorers than partitions,
    nothing to send); the message quotes the value. Also a ``ValueError``, as these were before."""


class ResponseFormatError(BenchError, ValueError):
    """The bytes a server sent are not an HTTP/1.1 response the load generator can frame (no status line, no
    ``Content-Length``, a transfer encoding). Also a ``ValueError``: the generator counts a connection that fails
    with one (or with a bad ``Content-Length`` number, which ``int`` reports as a ``ValueError``) as a failure."""


class LoadGeneratorError(BenchError):
    """The load-generator process exited before reporting, or sent something other than what was due."""


class BenchRunError(BenchError):
    """The system under test cannot be measured: a process it started exited (its log is named), the model did not
    load, a topic is not configured as the measurement needs, or the held-out data ran out."""


class BenchTimeoutError(BenchError, TimeoutError):
    """A process under test (the engine, ``slipstream serve``, ``score-stream``, the predictions reader) was not
    ready within its deadline. Also a ``TimeoutError``, as these were before."""
