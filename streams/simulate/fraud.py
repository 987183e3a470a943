"""The Fraud Detection Handbook's card-transaction simulator, reproducing the published data set exactly.

With the default :class:`FraudSimConfig` the result is the book's data set: 1,754,155 transactions,
14,681 frauds, 973 / 9,077 / 4,631 per scenario, every ``TRANSACTION_ID`` included (checked against the
published per-day files). Exactness rests on making every random draw the book makes, in its order:

* customers: ``RandomState(0)``; per customer x, y ~ U(0,100), mean_amount ~ U(5,100),
  mean_nb_tx_per_day ~ U(0,4) (one broadcast ``uniform`` call draws the same stream);
  terminals: ``RandomState(1)``, x, y ~ U(0,100);
* per customer with at least one terminal in reach: numpy and Python ``random`` both seeded with the
  customer id, then per day a Poisson count and per transaction a normal time, a normal (else uniform)
  amount and a ``random.choice`` of the terminal. These draws are data-dependent and interleaved, so
  they stay scalar calls; everything around them (distances, rounding, dates) is vectorised;
* scenario 2 and 3: ``Series.sample(n, random_state=day)`` is ``RandomState(day).choice(len, n,
  replace=False)`` and ``random.seed(day); random.sample(rows, k)`` picks positions that depend only on
  ``len(rows)`` and ``k``; both are replayed per day on per-terminal / per-customer row lists.

Private ``RandomState``/``random.Random`` instances give the same streams as the book's global
``np.random.seed``/``random.seed`` without touching global state, so the simulator is a pure function
of its config. The final sort reproduces numpy's classic introsort on every platform: see
:mod:`slipstream.streams.simulate.introsort`.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.streams.simulate.exceptions import SimulationConfigError, SimulationInputError
from slipstream.streams.simulate.introsort import introsort_argsort

if TYPE_CHECKING:
    from slipstream.streams.simulate.scenarios import DriftScenario

__all__ = [
    "TX_COLUMNS",
    "FraudSimConfig",
    "label_events",
    "simulate_transactions",
    "to_transaction_events",
]

TX_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)

SECONDS_PER_DAY = 86_400
_CUSTOMER_SEED = 0
_TERMINAL_SEED = 1
_TIME_MEAN = SECONDS_PER_DAY / 2
_TIME_STD = 20_000.0
_SCENARIO1_AMOUNT = 220.0
_SCENARIO2_TERMINALS, _SCENARIO2_DAYS = 2, 28
_SCENARIO3_CUSTOMERS, _SCENARIO3_DAYS = 3, 14
_SCENARIO3_FACTOR = 5
_DISTANCE_CHUNK = 64  # customers per block of the customer x terminal distance matrix

Progress = Callable[[int, int], None]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FraudSimConfig:
    """Simulator parameters; the defaults are the book's and give the published data set."""

    n_customers: int = 5000
    n_terminals: int = 10000
    nb_days: int = 183
    start_date: str = "2018-04-01"
    radius: float = 5.0
    label_delay: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        # Scenario 2 compromises 2 terminals a day and scenario 3 three customers: fewer cannot be sampled.
        minimum = {"n_customers": _SCENARIO3_CUSTOMERS, "n_terminals": _SCENARIO2_TERMINALS, "nb_days": 1}
        for name, least in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                msg = f"FraudSimConfig.{name} must be an integer >= {least}, got {value!r}"
                raise SimulationConfigError(msg)
        if not isinstance(self.radius, int | float) or not np.isfinite(self.radius) or self.radius <= 0:
            msg = f"FraudSimConfig.radius must be a positive finite number, got {self.radius!r}"
            raise SimulationConfigError(msg)
        try:
            date.fromisoformat(self.start_date)
        except (TypeError, ValueError) as exc:
            msg = f"FraudSimConfig.start_date must be an ISO date (YYYY-MM-DD), got {self.start_date!r}"
            raise SimulationConfigError(msg) from exc
        if not isinstance(self.label_delay, timedelta) or self.label_delay < timedelta(0):
            msg = f"FraudSimConfig.label_delay must be a non-negative timedelta, got {self.label_delay!r}"
            raise SimulationConfigError(msg)


@dataclass(frozen=True, slots=True)
class _Customers:
    xy: FloatArray  # (n, 2)
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_nb_tx_per_day: FloatArray


def _customers(n: int) -> _Customers:
    draws = np.random.RandomState(_CUSTOMER_SEED).uniform(
        low=[0.0, 0.0, 5.0, 0.0], high=[100.0, 100.0, 100.0, 4.0], size=(n, 4)
    )
    mean_amount = draws[:, 2].copy()
    return _Customers(draws[:, :2].copy(), mean_amount, mean_amount / 2, draws[:, 3].copy())


def _terminals(n: int) -> FloatArray:
    xy: FloatArray = np.random.RandomState(_TERMINAL_SEED).uniform(0, 100, size=(n, 2))
    return xy


def _terminals_in_reach(customer_xy: FloatArray, terminal_xy: FloatArray, radius: float) -> list[list[int]]:
    """Per customer, the ids of terminals at distance < radius (same float ops as the book)."""
    reach: list[list[int]] = []
    for lo in range(0, len(customer_xy), _DISTANCE_CHUNK):
        block = customer_xy[lo : lo + _DISTANCE_CHUNK]
        dx = block[:, 0:1] - terminal_xy[:, 0]
        dy = block[:, 1:2] - terminal_xy[:, 1]
        within = np.sqrt(dx * dx + dy * dy) < radius
        reach.extend(np.flatnonzero(row).tolist() for row in within)
    return reach


def _draw_transactions(
    config: FraudSimConfig, customers: _Customers, reach: list[list[int]], progress: Progress | None
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Customer-ordered (seconds, customer, terminal, raw amount), drawn exactly as the book does."""
    seconds, terminals, amounts = array("q"), array("q"), array("d")  # compact growable buffers
    counts = np.zeros(config.n_customers, dtype=np.int64)
    rs = np.random.RandomState()
    total = config.n_customers
    for cid in range(total):
        available = reach[cid]
        if available:  # no terminal: the book draws, then keeps nothing; reseeding makes that moot
            rs.seed(cid)
            choice = random.Random(cid).choice  # noqa: S311 - reproducing a simulation, not security
            # rs.normal(loc, scale) is loc + scale * standard_normal(): same draws, same double, 3x faster
            poisson, gauss, uniform = rs.poisson, rs.standard_normal, rs.uniform
            lam = float(customers.mean_nb_tx_per_day[cid])
            mean, std = float(customers.mean_amount[cid]), float(customers.std_amount[cid])
            before = len(seconds)
            for day in range(config.nb_days):
                offset = day * SECONDS_PER_DAY
                for _ in range(poisson(lam)):
                    t = int(_TIME_MEAN + _TIME_STD * gauss())
                    if 0 < t < SECONDS_PER_DAY:
                        amount = mean + std * gauss()
                        if amount < 0:
                            amount = uniform(0, mean * 2)
                        seconds.append(t + offset)
                        amounts.append(amount)
                        terminals.append(choice(available))
            counts[cid] = len(seconds) - before
        if progress is not None:
            progress(cid + 1, total)
    customer_ids: IntArray = np.repeat(np.arange(config.n_customers, dtype=np.int64), counts)
    rounded: FloatArray = np.frombuffer(amounts, dtype=np.float64).round(2)  # numpy's x*100, rint, /100
    secs: IntArray = np.frombuffer(seconds, dtype=np.int64).copy()
    terms: IntArray = np.frombuffer(terminals, dtype=np.int64).copy()
    return secs, customer_ids, terms, rounded


def _rows_by(keys: IntArray, n_keys: int) -> list[IntArray]:
    """For each key value, its row positions in ascending (row) order."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n_keys + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(n_keys)]


def _in_window(rows: IntArray, days: IntArray, start: int, length: int) -> IntArray:
    d = days[rows]
    picked: IntArray = rows[(d >= start) & (d < start + length)]
    return picked


def _add_frauds(
    config: FraudSimConfig, days: IntArray, customer_ids: IntArray, terminal_ids: IntArray, amount: FloatArray
) -> tuple[IntArray, IntArray]:
    """Scenarios 1-3 in the book's order; multiplies scenario-3 amounts in place."""
    scenario = np.zeros(days.size, dtype=np.int64)
    scenario[amount > _SCENARIO1_AMOUNT] = 1
    last_day = int(days.max()) if days.size else 0
    by_terminal = _rows_by(terminal_ids, config.n_terminals)
    by_customer = _rows_by(customer_ids, config.n_customers)
    for day in range(last_day):
        hit = np.random.RandomState(day).choice(config.n_terminals, _SCENARIO2_TERMINALS, replace=False)
        for terminal in hit.tolist():
            scenario[_in_window(by_terminal[terminal], days, day, _SCENARIO2_DAYS)] = 2
    for day in range(last_day):
        hit = np.random.RandomState(day).choice(config.n_customers, _SCENARIO3_CUSTOMERS, replace=False)
        rows = np.sort(np.concatenate([_in_window(by_customer[c], days, day, _SCENARIO3_DAYS) for c in hit.tolist()]))
        positions = random.Random(day).sample(range(rows.size), k=int(rows.size / 3))  # noqa: S311
        chosen = rows[np.asarray(positions, dtype=np.intp)]
        amount[chosen] = amount[chosen] * _SCENARIO3_FACTOR
        scenario[chosen] = 3
    fraud = (scenario > 0).astype(np.int64)
    return fraud, scenario


def simulate_transactions(
    config: FraudSimConfig | None = None, progress: Progress | None = None, scenario: DriftScenario | None = None
) -> pd.DataFrame:
    """The book's transactions table (columns :data:`TX_COLUMNS`), sorted and numbered like the book.

    ``progress(done, total)`` is called after each customer's transactions are drawn.
    ``TX_DATETIME`` is naive, as in the book; :func:`to_transaction_events` makes it UTC.
    ``scenario``: a drift from its start day on (:mod:`slipstream.streams.simulate.scenarios`); ``None`` is the book.
    """
    config = FraudSimConfig() if config is None else config
    if scenario is not None:
        scenario.first_day(config)  # a bad start day is refused before the draws
    customers = _customers(config.n_customers)
    reach = _terminals_in_reach(customers.xy, _terminals(config.n_terminals), config.radius)
    seconds, customer_ids, terminal_ids, amount = _draw_transactions(config, customers, reach, progress)
    order = introsort_argsort(seconds)
    seconds, customer_ids, terminal_ids = seconds[order], customer_ids[order], terminal_ids[order]
    amount = amount[order]
    days = seconds // SECONDS_PER_DAY
    if scenario is not None:  # inputs shifted before the fraud rules, which then apply to them unchanged
        terminal_ids, amount = scenario.shift(config, days, terminal_ids, amount)
    fraud, fraud_scenario = _add_frauds(config, days, customer_ids, terminal_ids, amount)
    start = np.datetime64(config.start_date, "s")
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(seconds.size, dtype=np.int64),
            "TX_DATETIME": (start + seconds).astype("datetime64[ns]"),
            "CUSTOMER_ID": customer_ids,
            "TERMINAL_ID": terminal_ids,
            "TX_AMOUNT": amount,
            "TX_TIME_SECONDS": seconds,
            "TX_TIME_DAYS": days,
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": fraud_scenario,
        }
    )
    return frame if scenario is None else scenario.add_transactions(config, frame, reach)


def _require(df: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        msg = f"transactions frame lacks columns {missing}; it has {list(df.columns)}"
        raise SimulationInputError(msg)


def _utc(naive: pd.Series) -> pd.Series:
    """The book's naive timestamps, read as UTC."""
    return pd.to_datetime(naive).dt.tz_localize("UTC")


def to_transaction_events(df: pd.DataFrame) -> pd.DataFrame:
    """Rows shaped like the ``transactions`` topic's Avro contract (event_time tz-aware UTC)."""
    _require(df, ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"))
    return pd.DataFrame(
        {
            "transaction_id": df["TRANSACTION_ID"].to_numpy(dtype=np.int64),
            "event_time": _utc(df["TX_DATETIME"]).array,
            "customer_id": df["CUSTOMER_ID"].to_numpy(dtype=np.int64),
            "terminal_id": df["TERMINAL_ID"].to_numpy(dtype=np.int64),
            "amount": df["TX_AMOUNT"].to_numpy(dtype=np.float64),
        }
    )


def label_events(transactions: pd.DataFrame, config: FraudSimConfig | None = None) -> pd.DataFrame:
    """One label per transaction, known ``config.label_delay`` after it (``labels`` topic contract)."""
    config = FraudSimConfig() if config is None else config
    _require(
        transactions,
        ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_FRAUD", "TX_FRAUD_SCENARIO"),
    )
    tx_time = _utc(transactions["TX_DATETIME"])
    return pd.DataFrame(
        {
            "transaction_id": transactions["TRANSACTION_ID"].to_numpy(dtype=np.int64),
            "customer_id": transactions["CUSTOMER_ID"].to_numpy(dtype=np.int64),
            "terminal_id": transactions["TERMINAL_ID"].to_numpy(dtype=np.int64),
            "tx_event_time": tx_time.array,
            "event_time": (tx_time + pd.Timedelta(config.label_delay)).array,
            "is_fraud": transactions["TX_FRAUD"].to_numpy() != 0,
            "fraud_scenario": transactions["TX_FRAUD_SCENARIO"].to_numpy(dtype=np.int32),
        }
    )
