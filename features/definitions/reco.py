"""Recommendation features over the interactions topic.

User: interactions over 1 h / 24 h / 7 d; user x category: interactions in the category over the same windows and
the affinity (share of the user's interactions); item: views and clicks over 1 h / 24 h and the click-through rate;
user x item: seconds since the user last touched the item.
"""

from __future__ import annotations

from datetime import timedelta

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
