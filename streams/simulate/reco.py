"""A recommendation clickstream simulator that keeps its ground truth, so rankers can be scored against it.

Every draw comes from one ``numpy.random.Generator(PCG64(seed))`` in a fixed order, so the result is a
pure function of :class:`RecoSimConfig`. The model:

* users: category preferences ``p_u ~ Dirichlet(category_concentration)``, a taste vector
  ``t_u ~ N(0, I / latent_dim)`` and an activity ``mean_sessions_per_user_per_day * Gamma(2, 1/2)``;
* items: a category, a latent vector near its category's centroid (unit variance per component), a Zipf base
  popularity ``(rank + 1) ** -popularity_exponent``, a release day (``new_item_share`` of the catalogue
  appears during the period) and a log-popularity trend ``g_i ~ N(0, drift_rate)`` per day: on day ``d``
  the popularity is ``base_i * exp(clip(g_i * (d - release_i), -4, 4))``, and 0 before release;
* affinity: the latent score ``z = max(log(C p_u[c_i]), -4) + t_u . v_i + q_i`` (``q_i`` an item quality
  loosely tied to base popularity); :meth:`RecoSimulation.true_affinity` is ``P(click | view) =
  sigmoid(1.3 z - 4.5)``; ``P(cart | click)`` and ``P(purchase | cart)`` are logistic in ``z`` too;
* sessions: per user and day ``Poisson(activity * weekday factor)``, started at a diurnal hour; a
  geometric number of views (mean ``views_per_session``); each view is, with probability
  ``personalization``, the user's own pick (category ~ ``p_u``, item in it ~ ``softmax(1.5 t_u . v_i + 0.5
  log popularity)``), else a pick from the day's chart (item ~ popularity);
* time: a view's funnel events follow it, 1 s or more apart; no gap inside a session exceeds 20 minutes and
  a user's sessions are at least 30 minutes apart, so 30-minute-inactivity sessionisation recovers them.
  A session begun late on the last day may end after the period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.streams.simulate.exceptions import SimulationConfigError, SimulationInputError

__all__ = ["INTERACTION_ACTIONS", "INTERACTION_COLUMNS", "RecoSimConfig", "RecoSimulation", "simulate_interactions"]

INTERACTION_ACTIONS = ("VIEW", "CLICK", "ADD_TO_CART", "PURCHASE")
INTERACTION_COLUMNS = ("event_id", "event_time", "user_id", "item_id", "category_id", "action")

Progress = Callable[[int, int], None]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_US = 1_000_000  # microseconds per second
_DAY_US = 86_400 * _US
_MAX_LOG_SHIFT = 4.0  # popularity drift saturates at e**4 up or down
_CATEGORY_FLOOR = -4.0  # log(C p_u[c]) floor: a category the user ignores
_CATEGORY_SHARES = 2.0  # Dirichlet concentration of category sizes
_CENTROID_WEIGHT = 0.8  # item vector = 0.8 centroid + 0.6 noise: unit variance, correlated within a category
_QUALITY_FROM_POPULARITY, _QUALITY_NOISE = 0.3, 0.3
_TASTE_WEIGHT, _POPULARITY_WEIGHT = 1.5, 0.5  # the personal pick's softmax
_CLICK, _CART, _PURCHASE = (-4.5, 1.3), (-2.0, 0.4), (-1.2, 0.4)  # (bias, slope) of the logistic in z
# Gaps in seconds: (minimum, exponential mean) before a next view, a click, a cart add and a purchase.
_GAPS = np.array([[2.0, 40.0], [1.0, 8.0], [2.0, 25.0], [5.0, 60.0]])
_MAX_GAP_S = 20 * 60
_SESSION_GAP_US = 30 * 60 * _US
_HOURLY = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 8, 10, 12, 12, 10, 7, 4], dtype=np.float64)
_HOURLY /= _HOURLY.sum()
_WEEKDAY = np.array([0.9, 0.9, 0.95, 1.0, 1.05, 1.15, 1.05])  # Monday first
_WEEKDAY /= _WEEKDAY.mean()


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return out


@dataclass(frozen=True, slots=True)
class RecoSimConfig:
    """Simulator parameters; the defaults give about 240,000 events in 28 days."""

    n_users: int = 2000
    n_items: int = 5000
    n_categories: int = 40
    days: int = 28
    start: str = "2024-01-01"  # midnight UTC of the first day
    seed: int = 42
    mean_sessions_per_user_per_day: float = 0.6
    views_per_session: float = 6.0
    latent_dim: int = 16
    category_concentration: float = 0.3  # Dirichlet of user category preferences: small = focused users
    popularity_exponent: float = 0.8  # Zipf exponent of base popularity
    drift_rate: float = 0.1  # std of each item's log-popularity change per day
    new_item_share: float = 0.2  # share of items released during the period
    personalization: float = 0.6  # share of views the user picks by taste rather than from the chart

    def __post_init__(self) -> None:
        minimum = {"n_users": 1, "n_items": 1, "n_categories": 1, "days": 1, "seed": 0, "latent_dim": 1}
        for name, least in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                msg = f"RecoSimConfig.{name} must be an integer >= {least}, got {value!r}"
                raise SimulationConfigError(msg)
        bounds = {  # name: (low, high, closed at low, closed at high)
            "mean_sessions_per_user_per_day": (0.0, np.inf, False, False),
            "views_per_session": (1.0, np.inf, True, False),
            "category_concentration": (0.0, np.inf, False, False),
            "popularity_exponent": (0.0, np.inf, True, False),
            "drift_rate": (0.0, np.inf, True, False),
            "new_item_share": (0.0, 1.0, True, False),
            "personalization": (0.0, 1.0, True, True),
        }
        for name, (low, high, closed_low, closed_high) in bounds.items():
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, int | float) and bool(np.isfinite(value))
            if not (
                number
                and (low <= value if closed_low else low < value)
                and (value <= high if closed_high else value < high)
            ):
                interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
                msg = f"RecoSimConfig.{name} must be a finite number in {interval}, got {value!r}"
                raise SimulationConfigError(msg)
        try:
            date.fromisoformat(self.start)
        except (TypeError, ValueError) as exc:
            msg = f"RecoSimConfig.start must be an ISO date (YYYY-MM-DD), got {self.start!r}"
            raise SimulationConfigError(msg) from exc


def _popularity(base: FloatArray, trend: FloatArray, release: IntArray, day: int) -> FloatArray:
    age = day - release
    shift = np.clip(trend * age, -_MAX_LOG_SHIFT, _MAX_LOG_SHIFT)
    pop: FloatArray = np.where(age >= 0, base * np.exp(shift), 0.0)
    return pop


@dataclass(frozen=True, slots=True, eq=False)
class RecoSimulation:
    """Events plus the latent truth behind them; the arrays are indexed by user_id / item_id."""

    config: RecoSimConfig
    events: pd.DataFrame  # INTERACTION_COLUMNS, sorted by event_time
    items: pd.DataFrame  # item_id, category_id, release_day, base_popularity, trend
    users: pd.DataFrame  # user_id, activity (expected sessions per day)
    category_score: FloatArray = field(repr=False)  # (n_users, n_categories): max(log(C p_u[c]), -4)
    user_taste: FloatArray = field(repr=False)  # (n_users, latent_dim)
    item_vector: FloatArray = field(repr=False)  # (n_items, latent_dim)
    item_quality: FloatArray = field(repr=False)  # (n_items,)
    _clicks: tuple[IntArray, IntArray, IntArray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        clicked = self.events[self.events["action"] == "CLICK"]  # every cart add and purchase follows one
        users = clicked["user_id"].to_numpy(dtype=np.int64)
        order = np.argsort(users, kind="stable")  # by user, then time
        times = clicked["event_time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)[order]
        bounds = np.searchsorted(users[order], np.arange(self.config.n_users + 1))
        index = (bounds, times, clicked["item_id"].to_numpy(dtype=np.int64)[order])
        object.__setattr__(self, "_clicks", index)

    def day_of(self, when: pd.Timestamp) -> int:
        """The simulation day (0 = ``config.start``) a tz-aware instant falls on."""
        if not isinstance(when, pd.Timestamp) or when.tzinfo is None:
            msg = f"expected a timezone-aware pandas Timestamp, got {when!r}"
            raise SimulationInputError(msg)
        return int((when - pd.Timestamp(self.config.start, tz="UTC")) // pd.Timedelta(days=1))

    def popularity(self, at_day: int | pd.Timestamp) -> FloatArray:
        """Every item's popularity weight on a day (0 before its release); the chart users browse."""
        day = self.day_of(at_day) if isinstance(at_day, pd.Timestamp) else int(at_day)
        items = self.items
        return _popularity(
            items["base_popularity"].to_numpy(dtype=np.float64),
            items["trend"].to_numpy(dtype=np.float64),
            items["release_day"].to_numpy(dtype=np.int64),
            day,
        )

    def true_affinity(self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike, at_day: int | pd.Timestamp) -> FloatArray:
        """Ground-truth relevance: ``P(click | view)`` of each (user, item), 0 if not yet released at ``at_day``.

        ``user_ids`` and ``item_ids`` broadcast (``u[:, None], i[None, :]`` gives a user x item grid).
        The ordering equals that of the latent score ``z``; use it as the NDCG gain.
        """
        day = self.day_of(at_day) if isinstance(at_day, pd.Timestamp) else int(at_day)
        users = _ids(user_ids, self.config.n_users, "user_ids")
        items = _ids(item_ids, self.config.n_items, "item_ids")
        users, items = np.broadcast_arrays(users, items)
        flat_u, flat_i = users.ravel(), items.ravel()
        category = self.items["category_id"].to_numpy(dtype=np.int64)
        release = self.items["release_day"].to_numpy(dtype=np.int64)
        score = np.empty(flat_u.size)
        step = 1 << 18  # pairs per chunk: bounds the (pairs, latent_dim) temporary
        for lo in range(0, flat_u.size, step):
            u, i = flat_u[lo : lo + step], flat_i[lo : lo + step]
            score[lo : lo + step] = _latent_score(self, u, i, category)
        relevance = np.where(release[flat_i] <= day, _sigmoid(_CLICK[0] + _CLICK[1] * score), 0.0)
        return relevance.reshape(users.shape)

    def relevant_items(self, user_id: int, after: pd.Timestamp) -> IntArray:
        """Sorted distinct items ``user_id`` clicked at or after ``after`` (the held-out truth)."""
        bounds, times, items = self._clicks
        (user,) = _ids(np.asarray([user_id]), self.config.n_users, "user_id")
        cut = pd.Timestamp(after)
        if cut.tzinfo is None:
            msg = f"after must be timezone-aware, got {after!r}"
            raise SimulationInputError(msg)
        lo, hi = bounds[user], bounds[user + 1]
        start = lo + np.searchsorted(times[lo:hi], cut.tz_convert("UTC").value, side="left")
        relevant: IntArray = np.unique(items[start:hi])
        return relevant


def _ids(values: npt.ArrayLike, n: int, name: str) -> IntArray:
    ids = np.asarray(values)
    if ids.dtype.kind not in "iu":
        msg = f"{name} must be integers, got dtype {ids.dtype}"
        raise SimulationInputError(msg)
    bad = ids[(ids < 0) | (ids >= n)]
    if bad.size:
        msg = f"{name} must lie in [0, {n}), got {bad.ravel()[:5].tolist()}"
        raise SimulationInputError(msg)
    out: IntArray = ids.astype(np.int64)
    return out


def _latent_score(sim: RecoSimulation, users: IntArray, items: IntArray, category: IntArray) -> FloatArray:
    taste = np.einsum("ij,ij->i", sim.user_taste[users], sim.item_vector[items])
    score: FloatArray = sim.category_score[users, category[items]] + taste + sim.item_quality[items]
    return score


def _pick_by_cdf(weights: FloatArray, u: FloatArray) -> IntArray:
    """Row-wise inverse-CDF draw: for each row of ``weights`` the column that ``u`` (in [0, 1)) falls in."""
    cdf = np.cumsum(weights, axis=1)
    below = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)  # first column whose cdf exceeds u * total
    picked: IntArray = np.minimum(below, weights.shape[1] - 1).astype(np.int64)
    return picked


def simulate_interactions(config: RecoSimConfig | None = None, progress: Progress | None = None) -> RecoSimulation:
    """Simulate the clickstream of ``config``; ``progress(done, total)`` is called after each day."""
    config = RecoSimConfig() if config is None else config
    rng = np.random.Generator(np.random.PCG64(config.seed))
    n_u, n_i, n_c, dim = config.n_users, config.n_items, config.n_categories, config.latent_dim

    # Items.
    category = rng.choice(n_c, size=n_i, p=rng.dirichlet(np.full(n_c, _CATEGORY_SHARES))).astype(np.int64)
    centroid = rng.standard_normal((n_c, dim))
    noise = np.sqrt(1.0 - _CENTROID_WEIGHT**2)
    vector = _CENTROID_WEIGHT * centroid[category] + noise * rng.standard_normal((n_i, dim))
    base = np.power(rng.permutation(n_i) + 1.0, -float(config.popularity_exponent), dtype=np.float64)
    base /= base.sum()
    release = np.zeros(n_i, dtype=np.int64)
    new = rng.choice(n_i, size=int(config.new_item_share * n_i), replace=False)
    release[new] = rng.integers(1, max(config.days, 2), size=new.size)
    trend = rng.normal(0.0, config.drift_rate, size=n_i)
    log_base = np.log(base)
    spread = float(log_base.std()) or 1.0
    quality = _QUALITY_FROM_POPULARITY * (log_base - log_base.mean()) / spread
    quality += _QUALITY_NOISE * rng.standard_normal(n_i)
    by_category = [np.flatnonzero(category == c) for c in range(n_c)]

    # Users.
    preference = rng.dirichlet(np.full(n_c, config.category_concentration), size=n_u) + 1e-12
    preference /= preference.sum(axis=1, keepdims=True)
    category_score = np.maximum(np.log(n_c * preference), _CATEGORY_FLOOR)
    taste = rng.standard_normal((n_u, dim)) / np.sqrt(dim)
    activity = config.mean_sessions_per_user_per_day * rng.gamma(2.0, 0.5, size=n_u)

    weekday0 = date.fromisoformat(config.start).weekday()
    sessions: list[tuple[IntArray, IntArray]] = []  # per day: (user, start in us from period start)
    views: list[tuple[IntArray, IntArray, IntArray, FloatArray]] = []  # (session, item, stages, gaps)
    n_sessions = 0
    for day in range(config.days):
        pop = _popularity(base, trend, release, day)
        log_pop = np.log(pop, out=np.full(n_i, -np.inf), where=pop > 0)
        counts = rng.poisson(activity * _WEEKDAY[(weekday0 + day) % 7])
        s_user = np.repeat(np.arange(n_u, dtype=np.int64), counts)
        hour = rng.choice(24, size=s_user.size, p=_HOURLY)
        s_start = day * _DAY_US + ((hour + rng.random(s_user.size)) * 3600 * _US).astype(np.int64)
        per_session = rng.geometric(1.0 / config.views_per_session, size=s_user.size)
        v_session = np.repeat(np.arange(s_user.size, dtype=np.int64), per_session)
        v_user = s_user[v_session]
        item = np.empty(v_user.size, dtype=np.int64)
        personal = rng.random(v_user.size) < config.personalization
        chart = np.cumsum(pop)
        item[~personal] = np.searchsorted(chart, rng.random(int((~personal).sum())) * chart[-1], side="right")
        item[~personal] = np.minimum(item[~personal], n_i - 1)
        rows = np.flatnonzero(personal)
        open_category = np.array([bool((pop[members] > 0).any()) for members in by_category])
        pick = _pick_by_cdf(preference[v_user[rows]] * open_category, rng.random(rows.size))
        for c in np.unique(pick).tolist():
            sub, members = rows[pick == c], by_category[c]
            logits = _TASTE_WEIGHT * taste[v_user[sub]] @ vector[members].T + _POPULARITY_WEIGHT * log_pop[members]
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            item[sub] = members[_pick_by_cdf(weights, rng.random(sub.size))]
        z = category_score[v_user, category[item]] + np.einsum("ij,ij->i", taste[v_user], vector[item])
        z += quality[item]
        u = rng.random((item.size, 3))
        click = u[:, 0] < _sigmoid(_CLICK[0] + _CLICK[1] * z)
        cart = click & (u[:, 1] < _sigmoid(_CART[0] + _CART[1] * z))
        purchase = cart & (u[:, 2] < _sigmoid(_PURCHASE[0] + _PURCHASE[1] * z))
        stages = 1 + click.astype(np.int64) + cart + purchase
        gaps = np.minimum(_GAPS[:, 0] + rng.exponential(_GAPS[:, 1], size=(item.size, 4)), _MAX_GAP_S)
        sessions.append((s_user, s_start))
        views.append((v_session + n_sessions, item, stages, gaps))
        n_sessions += s_user.size
        if progress is not None:
            progress(day + 1, config.days)

    events = _assemble(config, sessions, views, category)
    items = pd.DataFrame(
        {
            "item_id": np.arange(n_i, dtype=np.int64),
            "category_id": category.astype(np.int32),
            "release_day": release,
            "base_popularity": base,
            "trend": trend,
        }
    )
    users = pd.DataFrame({"user_id": np.arange(n_u, dtype=np.int64), "activity": activity})
    for array in (category_score, taste, vector, quality):
        array.flags.writeable = False
    return RecoSimulation(config, events, items, users, category_score, taste, vector, quality)


def _assemble(
    config: RecoSimConfig,
    sessions: list[tuple[IntArray, IntArray]],
    views: list[tuple[IntArray, IntArray, IntArray, FloatArray]],
    category: IntArray,
) -> pd.DataFrame:
    """Lay each session's events out in time, keep a user's sessions apart, sort and number the stream."""
    s_user = np.concatenate([s[0] for s in sessions])
    s_start = np.concatenate([s[1] for s in sessions])
    v_session = np.concatenate([v[0] for v in views])
    v_item = np.concatenate([v[1] for v in views])
    stages = np.concatenate([v[2] for v in views])
    gaps_us = (np.concatenate([v[3] for v in views]) * _US).astype(np.int64)
    gaps_us[np.flatnonzero(np.diff(v_session, prepend=-1)), 0] = 0  # no gap before a session's first view

    # One row per event: view k's stages 0..stages[k]-1 (VIEW, CLICK, ADD_TO_CART, PURCHASE).
    e_view = np.repeat(np.arange(v_item.size, dtype=np.int64), stages)
    first = np.cumsum(stages) - stages
    e_stage = np.arange(e_view.size, dtype=np.int64) - first[e_view]
    e_session = v_session[e_view]
    elapsed = np.cumsum(gaps_us[e_view, e_stage])
    session_first = np.searchsorted(e_session, np.arange(s_user.size))  # every session has >= 1 view
    offset = elapsed - elapsed[session_first][e_session]
    duration = np.zeros(s_user.size, dtype=np.int64)
    np.maximum.at(duration, e_session, offset)

    # Push each session to >= 30 min after the same user's previous one: start'_k = D_k + cummax(s_k - D_k),
    # D_k the user's cumulative (duration + gap) before session k.
    order = np.lexsort((s_start, s_user))
    user, nominal, span = s_user[order], s_start[order], duration[order] + _SESSION_GAP_US
    before = np.cumsum(span) - span
    before -= before[np.searchsorted(user, user)]  # restart the sum at each user
    start = np.empty_like(s_start)
    start[order] = before + pd.Series(nominal - before).groupby(user).cummax().to_numpy()

    time_us = start[e_session] + offset
    sort = np.argsort(time_us, kind="stable")
    item = v_item[e_view][sort]
    origin = np.datetime64(date.fromisoformat(config.start), "us")
    return pd.DataFrame(
        {
            "event_id": ("i" + pd.RangeIndex(sort.size).astype(str)).to_numpy(dtype=object),
            "event_time": pd.DatetimeIndex((origin + time_us[sort]).astype("datetime64[ns]")).tz_localize("UTC"),
            "user_id": s_user[e_session][sort],
            "item_id": item,
            "category_id": category[item].astype(np.int32),
            "action": np.asarray(INTERACTION_ACTIONS, dtype=object)[e_stage[sort]],
        }
    )
