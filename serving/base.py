"""The serving layer's interfaces and the values that cross them.

A *scorer* turns requests into scores: it reads entity state from a :class:`StateStore` (one round trip per batch),
computes the features exactly as training did, and runs the model that a :class:`ModelSlot` holds at that moment.
The HTTP service and the Kafka path (``score-stream``) are two front ends on the same scorer, so they cannot
disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from slipstream.features.feast_layout import JoinKeyValue
from slipstream.models.onnx_export import OnnxScorer


@dataclass(frozen=True, slots=True)
class ServingModel:
    """A loaded, checked and warmed model: what a request is scored with from start to end."""

    name: str
    version: str
    scorer: OnnxScorer
    feature_names: tuple[str, ...]
    threshold: float
    kind: str = "binary"
    loaded_at_us: int = 0
    card: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ViewFreshness:
    """How current the online store was for one view of the scored entity.

    ``newest_event_us``: the newest event the store had applied for the entity (None: it knew none).
    ``age_ms``: the scored event's time minus that, in milliseconds.
    """

    view: str
    newest_event_us: int | None
    age_ms: float | None


@dataclass(frozen=True, slots=True)
class FraudScore:
    """One transaction's score with its lineage: the features fed to the model, their freshness, the model."""

    event_id: str
    customer_id: int
    terminal_id: int
    event_time_us: int
    score: float
    decision: bool
    threshold: float
    model_name: str
    model_version: str
    features: dict[str, float]
    freshness: tuple[ViewFreshness, ...]
    timings_us: dict[str, float]

    @property
    def prediction_id(self) -> str:
        """Event id + model version: a re-delivered score of the same event by the same model has the same id."""
        return f"{self.event_id}@{self.model_version}"

    @property
    def feature_event_us(self) -> int | None:
        """The newest event behind any of the features (None when the store knew nothing of the entities)."""
        times = [f.newest_event_us for f in self.freshness if f.newest_event_us is not None]
        return max(times) if times else None

    @property
    def feature_age_ms(self) -> float | None:
        newest = self.feature_event_us
        return None if newest is None else (self.event_time_us - newest) / 1000.0


@dataclass(frozen=True, slots=True)
class RankedItem:
    item_id: int
    score: float
    rank: int
    features: dict[str, float]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A user's candidates ranked by the reco model, with the model and the freshness of the features used."""

    request_id: str
    user_id: int
    event_time_us: int
    model_name: str
    model_version: str
    items: tuple[RankedItem, ...]
    feature_event_us: int | None
    timings_us: dict[str, float]

    @property
    def feature_age_ms(self) -> float | None:
        newest = self.feature_event_us
        return None if newest is None else (self.event_time_us - newest) / 1000.0


class StateStore(Protocol):
    """Where the engine keeps each entity's window state (and its feature rows)."""

    def read_states(self, keys: Sequence[tuple[str, Mapping[str, JoinKeyValue]]]) -> list[bytes | None]:
        """The state bytes of each ``(view, join keys)``, in order, in one round trip; None where there is none.

        Raises :class:`~serving.exceptions.FeaturesUnavailableError` when the store cannot be read.
        """
        ...

    def ping(self) -> bool: ...

    def close(self) -> None:
        """Release its connections (a later read opens new ones)."""
        ...


class ModelProvider(Protocol):
    """Holds the model that serves now; reading it is atomic, so a request keeps the model it started with."""

    @property
    def current(self) -> ServingModel:
        """The serving model; raises :class:`~serving.exceptions.ModelUnavailableError` when none is loaded."""
        ...
