"""Errors of the serving layer. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

ServingError
├── InvalidRequestError      a request is malformed (HTTP 422; names the field and the bad value)
├── FeaturesUnavailableError the online store cannot be read (HTTP 503): never a score from missing features
├── ModelUnavailableError    no model is loaded yet (HTTP 503)
└── ModelRefusedError        a candidate model failed its checks at load time; the current one keeps serving
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class ServingError(SlipstreamError):
    """Root of the serving layer's errors."""


class InvalidRequestError(ServingError, ValueError):
    """A scoring request is malformed; the message names the field and the value."""


class FeaturesUnavailableError(ServingError):
    """The online store could not be read, so no score is given."""


class ModelUnavailableError(ServingError):
    """No model is loaded for this endpoint."""


class ModelRefusedError(ServingError):
    """A model failed a check before it was allowed to serve (feature list, parity sample, warm-up)."""
