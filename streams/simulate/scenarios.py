"""Drift scenarios for the fraud simulator: the book's data up to a chosen day D, then a change for drills to catch.

* ``none``: the book's data, unchanged (the default config gives the published data set, byte for byte).
* ``new-fraud-pattern``: card testing. Each day from D, ``cards_per_day`` cards (drawn per day among the customers
  that reach a terminal) are tested by a fraudster: a burst of ``burst_size`` extra transactions of small amounts
  (``test_amount``, uniform) in the night (the first between 00:00 and 06:00, the next ones seconds to minutes
  apart, none after 06:59:59) at terminals in the card's reach; all of them fraud, scenario id
  :data:`CARD_TESTING`. The book's rows and their frauds stay as they are; the new rows are merged in by time and
  every row renumbered in time order (rows before D keep their ids). A model trained before D has never seen a
  small night-time fraud nor a card with a dozen transactions in a night; the 15 model inputs carry all of it
  (amount, night, the customer's 1-day count and mean amount), so a model retrained on labels from after D
  learns it.
* ``covariate-shift``: from D every amount is ``amount_factor`` times larger and a share ``hub_share`` of the
  transactions moves to ``n_hubs`` hub terminals (large merchants: chosen among the terminals scenario 2 never
  compromises, so that no hub turns a 28-day terminal compromise into thousands of frauds). The book's fraud rules
  (scenarios 1-3) then run on the shifted data unchanged: what moves is P(x), not P(fraud | x). More amounts cross
  the scenario-1 threshold (220), so there are more scenario-1 frauds, by the same rule.

Every scenario is a pure function of (config, scenario): draws come from generators seeded by ``seed`` (and the
day), never from global state. :class:`DriftScenario` is the value; ``simulate_transactions(config,
scenario=...)`` applies it through two hooks: :meth:`DriftScenario.shift` (before the fraud rules) and
:meth:`DriftScenario.add_transactions` (after them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import numpy as np
import pandas as pd

from slipstream.streams.simulate.exceptions import SimulationConfigError
from slipstream.streams.simulate.fraud import (
    _SCENARIO2_TERMINALS,
    SECONDS_PER_DAY,
    FloatArray,
    FraudSimConfig,
    IntArray,
)

__all__ = ["CARD_TESTING", "SCENARIOS", "DriftScenario"]

SCENARIOS: Final = ("none", "new-fraud-pattern", "covariate-shift")
CARD_TESTING: Final = 4  # TX_FRAUD_SCENARIO of the card-testing frauds
_NIGHT_START_LATEST: Final = 6 * 3600  # a burst starts before 06:00 ...
_NIGHT_END: Final = 7 * 3600  # ... and stays in the night: TX_DURING_NIGHT is hour <= 6
_BURST_GAP_SECONDS: Final = 90.0  # mean gap between two tries on a tested card


def _check_int(field: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        msg = f"DriftScenario.{field} must be an integer >= {least}, got {value!r}"
        raise SimulationConfigError(msg)


def _check_range(field: str, value: object, *, integer: bool, least: float) -> None:
    kinds = (int,) if integer else (int, float)
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, kinds) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and least <= value[0] <= value[1]
    )
    if not ok:
        msg = f"DriftScenario.{field} must be a pair (low, high) with {least} <= low <= high, got {value!r}"
        raise SimulationConfigError(msg)


@dataclass(frozen=True, slots=True)
class DriftScenario:
    """A drift scenario: ``name`` (one of :data:`SCENARIOS`) from ``start_day`` on, with its parameters.

    ``start_day`` is a day number of the simulation (day 0 is ``FraudSimConfig.start_date``) or a date; ``None``
    is the middle day (``nb_days // 2``). It must fall in ``[1, nb_days)``, checked against a config by
    :meth:`first_day`. Parameters of the other scenarios are ignored.
    """

    name: str = "none"
    start_day: int | date | None = None
    seed: int = 15
    # new-fraud-pattern
    cards_per_day: int = 10
    burst_size: tuple[int, int] = (4, 12)
    test_amount: tuple[float, float] = (0.5, 5.0)
    # covariate-shift
    amount_factor: float = 1.3
    hub_share: float = 0.15
    n_hubs: int = 50

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            msg = f"unknown scenario {self.name!r}; choose {', '.join(SCENARIOS)}"
            raise SimulationConfigError(msg)
        day = self.start_day
        if day is not None and (isinstance(day, bool | datetime) or not isinstance(day, int | date)):
            msg = f"start_day must be a day number or a date, got {day!r}"
            raise SimulationConfigError(msg)
        _check_int("seed", self.seed, 0)
        _check_int("cards_per_day", self.cards_per_day, 1)
        _check_int("n_hubs", self.n_hubs, 1)
        _check_range("burst_size", self.burst_size, integer=True, least=1)
        _check_range("test_amount", self.test_amount, integer=False, least=0.01)
        factor = self.amount_factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor < math.inf:
            msg = f"DriftScenario.amount_factor must be a positive finite number, got {factor!r}"
            raise SimulationConfigError(msg)
        share = self.hub_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            msg = f"DriftScenario.hub_share must be in [0, 1], got {share!r}"
            raise SimulationConfigError(msg)

    def first_day(self, config: FraudSimConfig) -> int:
        """The day number D the drift starts on, checked to be in ``[1, nb_days)`` (``none`` without one: unchecked)."""
        day = self.start_day
        if day is None:
            if self.name == "none":
                return config.nb_days // 2
            day = config.nb_days // 2
        shown = f"{day}"
        if isinstance(day, date):
            offset = (day - date.fromisoformat(config.start_date)).days
            shown, day = f"{day.isoformat()} (day {offset})", offset
        if not 1 <= day < config.nb_days:
            msg = f"start_day must be in [1, {config.nb_days}), got {shown}"
            raise SimulationConfigError(msg)
        return day

    def shift(
        self, config: FraudSimConfig, days: IntArray, terminal_ids: IntArray, amount: FloatArray
    ) -> tuple[IntArray, FloatArray]:
        """Time-sorted (terminal ids, amounts) before the fraud rules run: moved from D on for covariate-shift."""
        if self.name != "covariate-shift":
            return terminal_ids, amount
        rows = np.flatnonzero(days >= self.first_day(config))
        amount, terminal_ids = amount.copy(), terminal_ids.copy()
        amount[rows] = (amount[rows] * self.amount_factor).round(2)
        rng = np.random.default_rng((self.seed, 0))
        moved = rows[rng.random(rows.size) < self.hub_share]
        hubs = self.hubs(config)
        terminal_ids[moved] = hubs[rng.integers(0, hubs.size, size=moved.size)]
        return terminal_ids, amount

    def hubs(self, config: FraudSimConfig) -> IntArray:
        """The covariate shift's hub terminals: ``n_hubs`` terminals scenario 2 never compromises, sorted."""
        compromised = np.concatenate(
            [
                np.random.RandomState(day).choice(config.n_terminals, _SCENARIO2_TERMINALS, replace=False)
                for day in range(config.nb_days)
            ]
        )
        candidates = np.setdiff1d(np.arange(config.n_terminals), compromised)
        if candidates.size < self.n_hubs:
            msg = f"DriftScenario.n_hubs must be at most {candidates.size} for this config, got {self.n_hubs}"
            raise SimulationConfigError(msg)
        chosen: IntArray = np.sort(np.random.default_rng((self.seed, 1)).choice(candidates, self.n_hubs, replace=False))
        return chosen

    def add_transactions(self, config: FraudSimConfig, frame: pd.DataFrame, reach: list[list[int]]) -> pd.DataFrame:
        """The finished transactions table, plus the card-testing rows for new-fraud-pattern, renumbered by time."""
        if self.name != "new-fraud-pattern":
            return frame
        extra = self._card_testing(config, reach)
        seconds = np.concatenate([frame["TX_TIME_SECONDS"].to_numpy(), extra["TX_TIME_SECONDS"].to_numpy()])
        order = np.argsort(seconds, kind="stable")  # the book's rows keep their order; new ones go after ties
        merged = pd.concat([frame, extra], ignore_index=True).iloc[order].reset_index(drop=True)
        merged["TRANSACTION_ID"] = np.arange(len(merged), dtype=np.int64)
        return merged

    def _card_testing(self, config: FraudSimConfig, reach: list[list[int]]) -> pd.DataFrame:
        cards = np.flatnonzero(np.fromiter((len(r) > 0 for r in reach), dtype=bool, count=len(reach)))
        low, high = self.burst_size
        seconds, customers, terminals, amounts = [], [], [], []
        for day in range(self.first_day(config), config.nb_days):
            rng = np.random.default_rng((self.seed, CARD_TESTING, day))
            for card in rng.choice(cards, size=min(self.cards_per_day, cards.size), replace=False).tolist():
                n = int(rng.integers(low, high + 1))
                gaps = 1 + rng.exponential(_BURST_GAP_SECONDS, size=n - 1).astype(np.int64)
                start = int(rng.integers(1, _NIGHT_START_LATEST))
                in_day = np.minimum(start + np.concatenate([[0], np.cumsum(gaps)]), _NIGHT_END - 1)
                seconds.append(in_day + day * SECONDS_PER_DAY)
                customers.append(np.full(n, card, dtype=np.int64))
                terminals.append(rng.choice(np.asarray(reach[card], dtype=np.int64), size=n))
                amounts.append(rng.uniform(*self.test_amount, size=n).round(2))
        secs = np.concatenate(seconds) if seconds else np.zeros(0, dtype=np.int64)
        n_rows = secs.size
        return pd.DataFrame(
            {
                "TRANSACTION_ID": np.zeros(n_rows, dtype=np.int64),
                "TX_DATETIME": (np.datetime64(config.start_date, "s") + secs).astype("datetime64[ns]"),
                "CUSTOMER_ID": np.concatenate(customers) if customers else np.zeros(0, dtype=np.int64),
                "TERMINAL_ID": np.concatenate(terminals) if terminals else np.zeros(0, dtype=np.int64),
                "TX_AMOUNT": np.concatenate(amounts) if amounts else np.zeros(0, dtype=np.float64),
                "TX_TIME_SECONDS": secs.astype(np.int64),
                "TX_TIME_DAYS": secs.astype(np.int64) // SECONDS_PER_DAY,
                "TX_FRAUD": np.ones(n_rows, dtype=np.int64),
                "TX_FRAUD_SCENARIO": np.full(n_rows, CARD_TESTING, dtype=np.int64),
            }
        )
