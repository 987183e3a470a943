"""The recommendation clickstream simulator: determinism, the interaction contract, the funnel and its ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.streams.simulate import (
    INTERACTION_ACTIONS,
    INTERACTION_COLUMNS,
    RecoSimConfig,
    RecoSimulation,
    simulate_interactions,
)

SMALL = RecoSimConfig(n_users=200, n_items=300, n_categories=8, days=10, seed=3)
MEDIUM = RecoSimConfig(n_users=800, n_items=1500, n_categories=20, days=21, seed=11)
SESSION_GAP = pd.Timedelta(minutes=30)


@pytest.fixture(scope="module")
def small() -> RecoSimulation:
    return simulate_interactions(SMALL)


@pytest.fixture(scope="module")
def medium() -> RecoSimulation:
    return simulate_interactions(MEDIUM)


def _by_user(events: pd.DataFrame) -> pd.DataFrame:
    """Events in per-user time order, each with the user's previous event alongside."""
    ordered = events.sort_values(["user_id", "event_time"], kind="stable").reset_index(drop=True)
    previous = ordered.shift(1)
    return ordered.assign(
        prev_user=previous["user_id"],
        prev_item=previous["item_id"],
        prev_action=previous["action"],
        gap=ordered["event_time"] - previous["event_time"],
    )


def _view_outcomes(sim: RecoSimulation) -> pd.DataFrame:
    """Every VIEW with its day, its true affinity and whether the user's next event clicks that item."""
    ordered = sim.events.sort_values(["user_id", "event_time"], kind="stable").reset_index(drop=True)
    following = ordered.shift(-1)
    clicked = (
        (following["action"] == "CLICK")
        & (following["user_id"] == ordered["user_id"])
        & (following["item_id"] == ordered["item_id"])
    )
    views = ordered.assign(clicked=clicked)[ordered["action"] == "VIEW"]
    start = pd.Timestamp(sim.config.start, tz="UTC")
    day = ((views["event_time"] - start) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)
    user, item = views["user_id"].to_numpy(), views["item_id"].to_numpy()
    release = sim.items["release_day"].to_numpy()[item]
    truth = np.empty(day.size)
    for d in np.unique(day).tolist():  # few days: one vectorised call each
        on = day == d
        truth[on] = sim.true_affinity(user[on], item[on], d)
    return views.assign(day=day, affinity=truth, released=release <= day)


def test_same_seed_same_simulation_and_another_seed_differs(small: RecoSimulation) -> None:
    again = simulate_interactions(SMALL)
    pd.testing.assert_frame_equal(again.events, small.events)
    pd.testing.assert_frame_equal(again.items, small.items)
    pd.testing.assert_frame_equal(again.users, small.users)
    np.testing.assert_array_equal(again.user_taste, small.user_taste)
    other = simulate_interactions(RecoSimConfig(n_users=200, n_items=300, n_categories=8, days=10, seed=4))
    assert not other.events[["user_id", "item_id", "action"]].equals(small.events[["user_id", "item_id", "action"]])
    assert not np.array_equal(other.items["base_popularity"], small.items["base_popularity"])


def test_events_follow_the_interaction_contract(small: RecoSimulation) -> None:
    events = small.events
    assert tuple(events.columns) == INTERACTION_COLUMNS
    assert str(events["event_time"].dtype) == "datetime64[ns, UTC]"
    assert events["user_id"].dtype == np.int64
    assert events["item_id"].dtype == np.int64
    assert events["category_id"].dtype == np.int32
    assert events["event_id"].tolist() == [f"i{n}" for n in range(len(events))]
    assert events["event_id"].is_unique
    assert events["event_time"].is_monotonic_increasing
    assert set(events["action"]) == set(INTERACTION_ACTIONS)
    assert events["user_id"].between(0, SMALL.n_users - 1).all()
    category = small.items["category_id"].to_numpy()
    np.testing.assert_array_equal(events["category_id"].to_numpy(), category[events["item_id"].to_numpy()])
    start = pd.Timestamp(SMALL.start, tz="UTC")
    assert events["event_time"].min() >= start
    assert events["event_time"].max() < start + pd.Timedelta(days=SMALL.days + 1)


def test_events_encode_with_the_real_avro_contract(small: RecoSimulation) -> None:
    serde = Contracts.default().serde("interactions")
    for record in small.events.iloc[::997].to_dict("records"):
        event: dict[str, Any] = {str(k): v for k, v in record.items()}
        event["event_time"] = event["event_time"].to_pydatetime()
        assert serde.decode(serde.encode(event)) == event


def test_funnel_steps_follow_their_predecessor_in_the_same_session(small: RecoSimulation) -> None:
    rows = _by_user(small.events)
    same_user = rows["prev_user"] == rows["user_id"]
    assert (rows.loc[same_user, "gap"] > pd.Timedelta(0)).all()  # a user's events never share an instant
    for step, before in zip(INTERACTION_ACTIONS[1:], INTERACTION_ACTIONS[:-1], strict=True):
        step_rows = rows[rows["action"] == step]
        assert len(step_rows) > 0
        assert (step_rows["prev_user"] == step_rows["user_id"]).all()
        assert (step_rows["prev_item"] == step_rows["item_id"]).all()
        assert (step_rows["prev_action"] == before).all()
        assert (step_rows["gap"] < SESSION_GAP).all()


def test_funnel_narrows(medium: RecoSimulation) -> None:
    counts = medium.events["action"].value_counts()
    assert counts["VIEW"] > counts["CLICK"] > counts["ADD_TO_CART"] > counts["PURCHASE"] > 0


def test_only_released_items_are_viewed(medium: RecoSimulation) -> None:
    views = _view_outcomes(medium)
    assert views["released"].all()
    assert (medium.items["release_day"] > 0).any()  # new items do appear during the period
    assert medium.events["item_id"].isin(medium.items.loc[medium.items["release_day"] > 0, "item_id"]).any()


def test_popularity_shifts_between_first_and_last_week(medium: RecoSimulation) -> None:
    events = medium.events[medium.events["action"] == "VIEW"]
    start = pd.Timestamp(MEDIUM.start, tz="UTC")
    first = events[events["event_time"] < start + pd.Timedelta(days=7)]
    last = events[events["event_time"] >= start + pd.Timedelta(days=MEDIUM.days - 7)]
    top_first = set(first["item_id"].value_counts().index[:10])
    top_last = set(last["item_id"].value_counts().index[:10])
    assert len(top_first & top_last) <= 6
    truth_first, truth_last = medium.popularity(0), medium.popularity(MEDIUM.days - 1)
    assert set(np.argsort(-truth_first)[:10]) != set(np.argsort(-truth_last)[:10])


def test_click_rate_rises_with_true_affinity(medium: RecoSimulation) -> None:
    views = _view_outcomes(medium)
    decile = pd.qcut(views["affinity"], 10, labels=False)
    by_decile = views.groupby(decile).agg(
        rate=("clicked", "mean"), affinity=("affinity", "mean"), n=("clicked", "size")
    )
    rates = by_decile["rate"].to_numpy()
    assert np.all(np.diff(rates) >= 0), rates
    assert rates[-1] > 5 * rates[4] > 0, rates
    # The affinity is the click probability itself: each decile's click rate matches its mean affinity.
    se = np.sqrt(by_decile["affinity"] * (1 - by_decile["affinity"]) / by_decile["n"]).to_numpy()
    assert np.all(np.abs(rates - by_decile["affinity"].to_numpy()) < 4 * se + 1e-3), (rates, by_decile)


def test_personal_affinity_beats_popularity_on_held_out_clicks(medium: RecoSimulation) -> None:
    cut_day = MEDIUM.days - 7
    cut = pd.Timestamp(MEDIUM.start, tz="UTC") + pd.Timedelta(days=cut_day)
    events = medium.events
    clicks = events[(events["action"] == "CLICK") & (events["event_time"] < cut)]
    chart = np.bincount(clicks["item_id"], minlength=MEDIUM.n_items) + np.linspace(0, 1e-3, MEDIUM.n_items)
    popularity_top = np.argsort(-chart)[:10]
    items = np.arange(MEDIUM.n_items)
    recall_pop, recall_personal, users = [], [], 0
    for user in range(0, MEDIUM.n_users, 4):
        relevant = medium.relevant_items(user, cut)
        if relevant.size == 0:
            continue
        users += 1
        personal = medium.true_affinity(user, items, cut_day) * (chart + 1.0)
        recall_pop.append(np.isin(relevant, popularity_top).mean())
        recall_personal.append(np.isin(relevant, np.argsort(-personal)[:10]).mean())
    assert users > 50
    assert 0.03 < np.mean(recall_pop) < np.mean(recall_personal), (np.mean(recall_pop), np.mean(recall_personal))


def test_relevant_items_are_the_clicks_at_or_after_the_cut(small: RecoSimulation) -> None:
    events = small.events
    cut = events["event_time"].iloc[len(events) // 2]
    for user in range(0, SMALL.n_users, 17):
        mine = events[(events["user_id"] == user) & (events["event_time"] >= cut) & (events["action"] == "CLICK")]
        np.testing.assert_array_equal(small.relevant_items(user, cut), np.unique(mine["item_id"]))
    assert small.relevant_items(0, events["event_time"].iloc[-1] + pd.Timedelta(seconds=1)).size == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        small.relevant_items(0, pd.Timestamp("2024-01-02"))
    with pytest.raises(ValueError, match=r"user_id must lie in \[0, 200\), got \[200\]"):
        small.relevant_items(200, cut)


def test_true_affinity_broadcasts_and_is_zero_before_release(small: RecoSimulation) -> None:
    users, items = np.arange(5), np.arange(SMALL.n_items)
    grid = small.true_affinity(users[:, None], items[None, :], SMALL.days)
    assert grid.shape == (5, SMALL.n_items)
    assert np.all((grid > 0) & (grid < 1))
    np.testing.assert_allclose(grid[3], small.true_affinity(3, items, SMALL.days))
    late = small.items.loc[small.items["release_day"] > 0].iloc[0]
    day = int(late["release_day"])
    assert small.true_affinity(0, int(late["item_id"]), day - 1) == 0.0
    assert small.true_affinity(0, int(late["item_id"]), day) > 0.0
    when = pd.Timestamp(SMALL.start, tz="UTC") + pd.Timedelta(days=day, hours=5)
    assert small.true_affinity(0, int(late["item_id"]), when) == small.true_affinity(0, int(late["item_id"]), day)
    with pytest.raises(ValueError, match=r"item_ids must lie in \[0, 300\), got \[300, -1\]"):
        small.true_affinity(0, [1, 300, -1], 0)
    with pytest.raises(ValueError, match="user_ids must be integers, got dtype float64"):
        small.true_affinity([0.5], 1, 0)


def test_progress_is_reported_once_per_day() -> None:
    calls: list[tuple[int, int]] = []
    config = RecoSimConfig(n_users=20, n_items=30, n_categories=3, days=4)
    simulate_interactions(config, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize(
    "changes",
    [
        {"n_users": 1, "n_items": 1, "n_categories": 1, "days": 1},
        {"n_items": 5, "n_categories": 9, "new_item_share": 0.8},  # empty categories, mostly unreleased catalogue
        {"personalization": 0.0, "drift_rate": 0.0, "popularity_exponent": 0.0},
        {"personalization": 1.0, "views_per_session": 1.0, "category_concentration": 50.0},
        {"mean_sessions_per_user_per_day": 1e-6},  # no sessions at all
    ],
)
def test_edge_configs_still_satisfy_the_contract(changes: dict[str, Any]) -> None:
    config = RecoSimConfig(**({"n_users": 30, "n_items": 40, "n_categories": 4, "days": 3} | changes))
    events = simulate_interactions(config).events
    assert tuple(events.columns) == INTERACTION_COLUMNS
    assert str(events["event_time"].dtype) == "datetime64[ns, UTC]"
    assert events["event_time"].is_monotonic_increasing
    assert events["item_id"].between(0, config.n_items - 1).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_users", 0, r"RecoSimConfig.n_users must be an integer >= 1, got 0"),
        ("n_items", 2.5, r"RecoSimConfig.n_items must be an integer >= 1, got 2.5"),
        ("days", True, r"RecoSimConfig.days must be an integer >= 1, got True"),
        ("seed", -1, r"RecoSimConfig.seed must be an integer >= 0, got -1"),
        ("latent_dim", 0, r"RecoSimConfig.latent_dim must be an integer >= 1, got 0"),
        ("mean_sessions_per_user_per_day", 0.0, r"mean_sessions_per_user_per_day must be .* \(0, inf\), got 0.0"),
        ("views_per_session", 0.5, r"views_per_session must be a finite number in \[1, inf\), got 0.5"),
        ("drift_rate", float("nan"), r"drift_rate must be a finite number in \[0, inf\), got nan"),
        ("new_item_share", 1.0, r"new_item_share must be a finite number in \[0, 1\), got 1.0"),
        ("personalization", 1.5, r"personalization must be a finite number in \[0, 1\], got 1.5"),
        ("category_concentration", "1", r"category_concentration must be a finite number in \(0, inf\), got '1'"),
        ("start", "2024-13-01", r"RecoSimConfig.start must be an ISO date \(YYYY-MM-DD\), got '2024-13-01'"),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecoSimConfig(**{field: value})
