"""Errors of the composition root. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`.

ConfigError    a setting is invalid; the message names the variable and the bad value
InputError     a command's input is wrong (a file, a column, an option value); checked before any work starts
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class ConfigError(SlipstreamError):
    """A setting is invalid; the message names the environment variable or file at fault."""


class InputError(SlipstreamError):
    """A command's input is wrong: a file missing or of the wrong format, a column missing, an option value out of
    range. The message is one line naming the option and the file, column or value; the CLI exits 2."""
