"""The feature sets Slipstream ships: the Fraud Handbook's 14 features and a recommendation set."""

from slipstream.features.base import FeatureSet
from slipstream.features.definitions.fraud import FRAUD
from slipstream.features.definitions.reco import RECO

FEATURE_SETS: dict[str, FeatureSet] = {FRAUD.name: FRAUD, RECO.name: RECO}

__all__ = ["FEATURE_SETS", "FRAUD", "RECO"]
