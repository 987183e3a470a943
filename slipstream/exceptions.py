"""Errors of the composition root. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`.

ConfigError    a setting is invalid; the message names the variable and the bad value
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class ConfigError(SlipstreamError):
    """A setting is invalid; the message names the environment variable or file at fault."""
