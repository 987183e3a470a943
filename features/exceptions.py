"""Errors of the feature layer. Branch of :class:`schemas.exceptions.SlipstreamError`::

FeatureError
├── DefinitionError     a feature declaration is inconsistent (names the feature and what is wrong)
├── LayoutError         a value does not fit Feast's online layout (also a ValueError)
└── OnlineStoreError    Redis refused or lost an online write or read
"""

from __future__ import annotations

from schemas.exceptions import SlipstreamError


class FeatureError(SlipstreamError):
    """Root of the feature layer's errors."""


class DefinitionError(FeatureError):
    """A feature, view or feature set declaration is inconsistent."""


class LayoutError(FeatureError, ValueError):
    """A key, value or time does not fit Feast's Redis layout."""


class OnlineStoreError(FeatureError):
    """Redis refused or lost an online write or read."""
