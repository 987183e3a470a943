"""The feature language: entities, windows, aggregations, ratios and request-time features.

One declaration drives everything: the online engine (``streams/engine``), the offline engine
(``features/offline.py``), the Feast objects (``features/feast_repo.py``) and the scorer. Windows are over event time:
``Window(length=w, delay=d)`` covers ``(t - (w + d), t - d]`` at the time ``t`` of the event being computed.
With ``d == 0`` the event itself is included, and of events at exactly ``t`` those up to it in event order (time,
then id) count — the Fraud Handbook's definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from slipstream.features.exceptions import DefinitionError

MICROS = 1_000_000
Dtype = Literal["int64", "int32", "string"]


def micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


class Agg(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    DISTINCT_COUNT = "distinct_count"
    TIME_SINCE_LAST = "time_since_last"  # seconds since the previous event (the current one excluded)


@dataclass(frozen=True, slots=True)
class Entity:
    """What features describe; ``join_keys`` name event fields (and Feast join keys)."""

    name: str
    join_keys: tuple[str, ...]
    dtypes: tuple[Dtype, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.join_keys or len(self.join_keys) != len(self.dtypes):
            msg = f"entity {self.name!r}: join_keys {self.join_keys} and dtypes {self.dtypes} must pair up"
            raise DefinitionError(msg)


@dataclass(frozen=True, slots=True)
class Window:
    length: timedelta
    delay: timedelta = timedelta(0)
    # Derived once: the hot path reads these for every feature of every event.
    length_us: int = field(init=False, repr=False, compare=False)
    delay_us: int = field(init=False, repr=False, compare=False)
    reach_us: int = field(init=False, repr=False, compare=False)  # how far back from ``t`` the window reaches

    def __post_init__(self) -> None:
        if self.length <= timedelta(0) or self.delay < timedelta(0):
            msg = f"window length must be > 0 and delay >= 0, got length={self.length}, delay={self.delay}"
            raise DefinitionError(msg)
        object.__setattr__(self, "length_us", micros(self.length))
        object.__setattr__(self, "delay_us", micros(self.delay))
        object.__setattr__(self, "reach_us", micros(self.length) + micros(self.delay))


@dataclass(frozen=True, slots=True)
class Where:
    """Keep only events whose ``field`` equals ``value`` (e.g. ``action == "CLICK"``)."""

    field: str
    value: str | int | bool


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A windowed aggregation of one source's events for one entity.

    ``time_field`` places an event in the window (labels: the labelled transaction's time); ``known_by`` names the
    time at which the event became known: it counts only if known by ``t`` (labels: the label's own time).
    """

    name: str
    source: str
    agg: Agg
    window: Window
    field: str | None = None
    where: Where | None = None
    default: float = 0.0

    def __post_init__(self) -> None:
        needs_field = self.agg not in (Agg.COUNT, Agg.TIME_SINCE_LAST)
        if needs_field and self.field is None:
            msg = f"feature {self.name!r}: {self.agg.value} needs a field"
            raise DefinitionError(msg)


@dataclass(frozen=True, slots=True)
class Ratio:
    """``numerator / denominator`` of two features of the same view; ``default`` when the denominator is 0."""

    name: str
    numerator: str
    denominator: str
    default: float = 0.0


ViewFeature = Aggregate | Ratio


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How a topic's events enter a view's state: which fields place, identify and date them, which are kept."""

    topic: str
    time_field: str = "event_time"
    id_field: str = "event_id"
    known_by: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureView:
    """Features of one entity, computed from one or more sources, stored as one Feast feature view."""

    name: str
    entity: Entity
    sources: tuple[SourceSpec, ...]
    features: tuple[ViewFeature, ...]
    ttl: timedelta = timedelta(days=90)
    description: str = ""
    _reach_us: int = field(init=False, repr=False, compare=False)
    known_by_topics: frozenset[str] = field(init=False, repr=False, compare=False)
    #: Per feature, the index of its (source, window) among the view's distinct ones (-1 for a ratio): features over
    #: the same events (a count and a mean of one window) find them once.
    spans: tuple[int, ...] = field(init=False, repr=False, compare=False)
    n_spans: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reach = max((f.window.reach_us for f in self.features if isinstance(f, Aggregate)), default=0)
        object.__setattr__(self, "_reach_us", reach)
        object.__setattr__(self, "known_by_topics", frozenset(s.topic for s in self.sources if s.known_by))
        distinct: dict[tuple[str, int, int], int] = {}
        spans = [
            distinct.setdefault((f.source, f.window.length_us, f.window.delay_us), len(distinct))
            if isinstance(f, Aggregate)
            else -1
            for f in self.features
        ]
        object.__setattr__(self, "spans", tuple(spans))
        object.__setattr__(self, "n_spans", len(distinct))
        names = [f.name for f in self.features]
        if len(names) != len(set(names)):
            msg = f"view {self.name!r} declares a feature twice: {names}"
            raise DefinitionError(msg)
        topics = {s.topic for s in self.sources}
        for feature in self.features:
            if isinstance(feature, Aggregate) and feature.source not in topics:
                msg = f"feature {feature.name!r} reads {feature.source!r}, not a source of view {self.name!r}"
                raise DefinitionError(msg)
            if isinstance(feature, Ratio) and not {feature.numerator, feature.denominator} <= set(names):
                msg = f"ratio {feature.name!r} needs features {feature.numerator!r} and {feature.denominator!r}"
                raise DefinitionError(msg)

    def source(self, topic: str) -> SourceSpec:
        for spec in self.sources:
            if spec.topic == topic:
                return spec
        msg = f"view {self.name!r} has no source {topic!r}"
        raise DefinitionError(msg)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def reach_us(self) -> int:
        """The furthest any window of this view looks back."""
        return self._reach_us


RequestKind = Literal["field", "night", "weekend"]


@dataclass(frozen=True, slots=True)
class RequestFeature:
    """Computed from the request (the event being scored) alone: a field, or a calendar flag of its time."""

    name: str
    kind: RequestKind
    field: str = "event_time"


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """What a model sees for one kind of event: request features, views in stage order, then derived ratios.

    ``trigger`` is the topic whose events get a feature vector; ``model_input`` fixes the feature order.
    """

    name: str
    trigger: str
    request: tuple[RequestFeature, ...]
    views: tuple[FeatureView, ...]
    model_input: tuple[str, ...] = field(default=())
    derived: tuple[Ratio, ...] = ()

    def __post_init__(self) -> None:
        available = [r.name for r in self.request] + [n for v in self.views for n in v.feature_names]
        for ratio in self.derived:
            if not {ratio.numerator, ratio.denominator} <= set(available):
                msg = f"derived feature {ratio.name!r} needs {ratio.numerator!r} and {ratio.denominator!r}"
                raise DefinitionError(msg)
            available.append(ratio.name)
        if len(available) != len(set(available)):
            msg = f"feature set {self.name!r}: names collide across views: {available}"
            raise DefinitionError(msg)
        missing = [n for n in self.model_input if n not in available]
        if missing:
            msg = f"feature set {self.name!r}: model_input names unknown features {missing}"
            raise DefinitionError(msg)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature this set computes: request features, each view's, then the derived ones."""
        names = [r.name for r in self.request] + [n for v in self.views for n in v.feature_names]
        return (*names, *(r.name for r in self.derived))

    def view(self, name: str) -> FeatureView:
        for view in self.views:
            if view.name == name:
                return view
        msg = f"feature set {self.name!r} has no view {name!r}"
        raise DefinitionError(msg)
