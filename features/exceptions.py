"""Errors of the feature layer. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

FeatureError
├── DefinitionError     a feature declaration is inconsistent (names the feature and what is wrong)
├── LayoutError         a value does not fit Feast's online layout (also a ValueError)
├── OnlineStoreError    Redis refused or lost an online write or read
└── StateFormatError    window state that cannot be encoded, or bytes that cannot be decoded (also a ValueError)
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class FeatureError(SlipstreamError):
    """Root of the feature layer's errors."""


class DefinitionError(FeatureError):
    """A feature, view or feature set declaration is inconsistent."""


class LayoutError(FeatureError, ValueError):
    """A key, value or time does not fit Feast's Redis layout."""


class OnlineStoreError(FeatureError):
    """Redis refused or lost an online write or read."""


class StateFormatError(FeatureError, ValueError):
    """A window state whose columns do not match its events, or bytes that should hold one and are truncated,
    corrupt or of an unknown format."""
