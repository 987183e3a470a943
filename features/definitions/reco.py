"""Recommendation features over the interactions topic.

User: interactions over 1 h / 24 h / 7 d; user x category: interactions in the category over the same windows and
the affinity (share of the user's interactions); item: views and clicks over 1 h / 24 h and the click-through rate;
user x item: seconds since the user last touched the item.

The ranker's inputs are declared here too (:data:`RANKER_VIEWS`, :data:`FEATURES`), from the views themselves: training
(``slipstream.models.reco``) and serving (``slipstream.serving.reco``) both read them from this one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from slipstream.features.base import (
    Agg,
    Aggregate,
    Entity,
    FeatureSet,
    FeatureView,
    Ratio,
    RequestFeature,
    SourceSpec,
    Where,
    Window,
)

HOUR = timedelta(hours=1)
WINDOWS = {"1H": HOUR, "24H": 24 * HOUR, "7D": 7 * 24 * HOUR}
ITEM_WINDOWS = {"1H": HOUR, "24H": 24 * HOUR}

USER = Entity("user", ("user_id",), ("int64",), "A shopper.")
USER_CATEGORY = Entity("user_category", ("user_id", "category_id"), ("int64", "int32"), "A shopper in a category.")
ITEM = Entity("item", ("item_id",), ("int64",), "A product.")
USER_ITEM = Entity("user_item", ("user_id", "item_id"), ("int64", "int64"), "A shopper and a product.")

INTERACTIONS = SourceSpec("interactions", time_field="event_time", id_field="event_id", fields=("action",))

USER_VIEW = FeatureView(
    "user_activity",
    USER,
    (INTERACTIONS,),
    tuple(Aggregate(f"USER_NB_EVENTS_{k}", "interactions", Agg.COUNT, Window(w)) for k, w in WINDOWS.items()),
)
USER_CATEGORY_VIEW = FeatureView(
    "user_category_affinity",
    USER_CATEGORY,
    (INTERACTIONS,),
    tuple(
        feature
        for k, w in WINDOWS.items()
        for feature in (Aggregate(f"USER_CAT_NB_EVENTS_{k}", "interactions", Agg.COUNT, Window(w)),)
    ),
)
ITEM_VIEW = FeatureView(
    "item_popularity",
    ITEM,
    (INTERACTIONS,),
    tuple(
        feature
        for k, w in ITEM_WINDOWS.items()
        for feature in (
            Aggregate(f"ITEM_NB_VIEWS_{k}", "interactions", Agg.COUNT, Window(w), where=Where("action", "VIEW")),
            Aggregate(f"ITEM_NB_CLICKS_{k}", "interactions", Agg.COUNT, Window(w), where=Where("action", "CLICK")),
            Ratio(f"ITEM_CTR_{k}", f"ITEM_NB_CLICKS_{k}", f"ITEM_NB_VIEWS_{k}"),
        )
    ),
)
USER_ITEM_VIEW = FeatureView(
    "user_item_recency",
    USER_ITEM,
    (INTERACTIONS,),
    (
        Aggregate(
            "USER_ITEM_SECONDS_SINCE_LAST", "interactions", Agg.TIME_SINCE_LAST, Window(30 * 24 * HOUR), default=-1.0
        ),
        Aggregate("USER_ITEM_NB_EVENTS_7D", "interactions", Agg.COUNT, Window(WINDOWS["7D"])),
    ),
)

RECO = FeatureSet(
    name="reco",
    trigger="interactions",
    request=(RequestFeature("HOUR_NIGHT", "night"), RequestFeature("HOUR_WEEKEND", "weekend")),
    views=(USER_VIEW, USER_CATEGORY_VIEW, USER_ITEM_VIEW, ITEM_VIEW),
    derived=tuple(Ratio(f"USER_CAT_AFFINITY_{k}", f"USER_CAT_NB_EVENTS_{k}", f"USER_NB_EVENTS_{k}") for k in WINDOWS),
)


# --------------------------------------------------------------------------------------------------- ranker inputs
@dataclass(frozen=True, slots=True)
class RankerView:
    """How the reco ranker reads one view: the newest stored row of an entity at or before the request's time, and
    that row's age in seconds (:attr:`age`). A missing row gives each feature its declared default and -1 for the age.

    ``columns`` are the view's features whose default is 0 (counts, ratios), ``extra`` the others (``-1``: "seconds
    since last"): training's column order puts every view's columns and age first, then the extras.
    """

    view: FeatureView
    age: str
    name: str = field(init=False)
    join_keys: tuple[str, ...] = field(init=False)
    columns: tuple[str, ...] = field(init=False)
    extra: tuple[str, ...] = field(init=False)
    defaults: tuple[float, ...] = field(init=False)  # of ``extra``, in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.view.name)
        object.__setattr__(self, "join_keys", self.view.entity.join_keys)
        object.__setattr__(self, "columns", tuple(f.name for f in self.view.features if f.default == 0.0))
        others = tuple(f for f in self.view.features if f.default != 0.0)
        object.__setattr__(self, "extra", tuple(f.name for f in others))
        object.__setattr__(self, "defaults", tuple(f.default for f in others))


#: The views the ranker reads, in training's order.
RANKER_VIEWS: Final = (
    RankerView(USER_VIEW, "USER_AGE_S"),
    RankerView(USER_CATEGORY_VIEW, "USER_CAT_AGE_S"),
    RankerView(USER_ITEM_VIEW, "USER_ITEM_AGE_S"),
    RankerView(ITEM_VIEW, "ITEM_AGE_S"),
)
#: The user's share of interactions in the candidate's category, per window (the set's derived ratios).
AFFINITY: Final = tuple(ratio.name for ratio in RECO.derived)
#: The candidate's views over the last 7 days, as the retrieval stage counted them (sent with each candidate).
POPULARITY: Final = "ITEM_RECENT_VIEWS_7D"
#: Every feature the ranker is given, in training's column order.
FEATURES: Final = (
    *(name for view in RANKER_VIEWS for name in (*view.columns, view.age)),
    *(name for view in RANKER_VIEWS for name in view.extra),
    *AFFINITY,
    POPULARITY,
)
