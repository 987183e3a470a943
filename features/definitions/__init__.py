"""The feature sets Slipstream ships: the Fraud Handbook's 14 features and a recommendation set."""

from features.base import FeatureSet
from features.definitions.fraud import FRAUD
from features.definitions.reco import RECO

FEATURE_SETS: dict[str, FeatureSet] = {FRAUD.name: FRAUD, RECO.name: RECO}

__all__ = ["FEATURE_SETS", "FRAUD", "RECO"]
