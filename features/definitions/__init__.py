"""The feature sets Slipstream ships, one module each: the Fraud Handbook's 14 features and a recommendation set.

A feature set is one module in this package that binds a :class:`~slipstream.features.base.FeatureSet` at module
level. :func:`feature_sets` finds every such module, so adding a set is adding a file: the online engine's topology,
its internal topics, the Feast repo and the scorers' layouts all derive from the definition.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING

from slipstream.features.base import FeatureSet
from slipstream.features.definitions.fraud import FRAUD
from slipstream.features.definitions.reco import RECO
from slipstream.features.exceptions import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FRAUD", "RECO", "discover", "feature_sets"]


def discover(package: ModuleType) -> dict[str, FeatureSet]:
    """Every feature set bound at module level in the modules of ``package``, by name (one name twice: an error)."""
    found: dict[str, FeatureSet] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if not isinstance(value, FeatureSet):
                continue
            known = found.setdefault(value.name, value)
            if known is not value and known != value:
                msg = f"feature set name {value.name!r} is declared twice (in {module.__name__} and elsewhere)"
                raise DefinitionError(msg)
    return found


@cache
def feature_sets() -> Mapping[str, FeatureSet]:
    """The feature sets of this package, by name (found once, on first use: importing touches no disk)."""
    import slipstream.features.definitions as package

    return MappingProxyType(discover(package))
