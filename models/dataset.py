"""Training frames for the fraud model: point-in-time features from the offline engine, joined with the label.

:func:`fraud_training_frame` gives one row per transaction: ``transaction_id``, ``customer_id``, ``event_time``,
``label`` (0/1, the simulator's truth) and then ``FRAUD.model_input`` in order, every feature as of the transaction
itself (:func:`slipstream.features.offline.compute_offline`, equal to an online replay).

Label delay, two variants:

* ``"handbook"``: every label is known exactly 7 days after its transaction (the labels frame as given), the
  Fraud Detection Handbook's assumption and the one its published figures use.
* ``"realistic"``: label arrival is re-simulated (:func:`realistic_labels`, fixed seed): a fraud is reported after a
  lognormal delay (median 2 days), a genuine transaction is confirmed only at 30 days' maturity. The terminal risk
  features are recomputed from those label events (a label counts once it has arrived), and
  ``with_label_time=True`` adds the ``label_time`` column so that a protocol can treat a transaction whose label has
  not arrived yet as genuine (:func:`known_labels`), as a real system would.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.features.definitions.fraud import FRAUD
from slipstream.features.offline import compute_offline
from slipstream.models.exceptions import InvalidInputError, UnknownOptionError

LabelDelay = Literal["handbook", "realistic"]
LABEL_DELAYS: Final = ("handbook", "realistic")
TX_COLUMNS: Final = ("transaction_id", "event_time", "customer_id", "terminal_id", "amount")
LABEL_COLUMNS: Final = ("transaction_id", "customer_id", "terminal_id", "tx_event_time", "event_time", "is_fraud")
KEY_COLUMNS: Final = ("transaction_id", "customer_id", "event_time", "label")
LABEL_TIME: Final = "label_time"

REALISTIC_SEED: Final = 20180401
FRAUD_MEDIAN_DELAY_DAYS: Final = 2.0
FRAUD_DELAY_SIGMA: Final = 1.0
GENUINE_MATURITY_DAYS: Final = 30.0
_DAY_NS: Final = 86_400 * 1_000_000_000


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Refuse a frame lacking any of ``columns``, naming the missing ones."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = f"{what} lacks columns {missing}; it has {list(frame.columns)}"
        raise InvalidInputError(msg)


def utc_time(value: str | date | datetime | pd.Timestamp) -> pd.Timestamp:
    """A timezone-aware instant: strings and dates are read as UTC; a naive ``datetime`` is refused."""
    if isinstance(value, datetime) and value.tzinfo is None:
        msg = f"naive datetime {value!r}: event time is always timezone-aware"
        raise InvalidInputError(msg)
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def window(
    frame: pd.DataFrame,
    start: str | date | datetime | pd.Timestamp,
    end: str | date | datetime | pd.Timestamp,
    *,
    time_column: str = "event_time",
) -> pd.DataFrame:
    """The rows with ``start <= time < end`` (strings such as ``"2018-07-25"`` are UTC midnights)."""
    require_columns(frame, (time_column,), "frame")
    lo, hi = utc_time(start), utc_time(end)
    if hi < lo:
        msg = f"window end {hi} is before its start {lo}"
        raise InvalidInputError(msg)
    times = frame[time_column]
    return frame.loc[(times >= lo) & (times < hi)].reset_index(drop=True)


def data_hash(frame: pd.DataFrame) -> str:
    """A stable sha256 of a frame's column names, dtypes and values (index included): equal data, equal hash."""
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def realistic_labels(
    labels: pd.DataFrame,
    *,
    seed: int = REALISTIC_SEED,
    fraud_median_days: float = FRAUD_MEDIAN_DELAY_DAYS,
    fraud_sigma: float = FRAUD_DELAY_SIGMA,
    genuine_maturity_days: float = GENUINE_MATURITY_DAYS,
) -> pd.DataFrame:
    """The label events re-timed: fraud after a lognormal delay, genuine at maturity; deterministic for a seed.

    Draws are made in ``transaction_id`` order, so the result does not depend on the input's row order.
    """
    require_columns(labels, LABEL_COLUMNS, "labels")
    if fraud_median_days <= 0 or fraud_sigma < 0 or genuine_maturity_days < 0:
        msg = (
            f"label delays must be positive: fraud_median_days={fraud_median_days!r}, "
            f"fraud_sigma={fraud_sigma!r}, genuine_maturity_days={genuine_maturity_days!r}"
        )
        raise InvalidInputError(msg)
    out = labels.sort_values("transaction_id", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    draws = rng.lognormal(mean=np.log(fraud_median_days), sigma=fraud_sigma, size=len(out))
    fraud = out["is_fraud"].to_numpy(dtype=bool)
    days = np.where(fraud, draws, genuine_maturity_days)
    delay = pd.to_timedelta(np.round(days * _DAY_NS).astype(np.int64), unit="ns")
    out["event_time"] = out["tx_event_time"] + delay
    return out


def fraud_training_frame(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    label_delay: str = "handbook",
    with_label_time: bool = False,
    seed: int = REALISTIC_SEED,
) -> pd.DataFrame:
    """One row per transaction: keys, ``label`` (int 0/1 from ``tx_fraud``), then ``FRAUD.model_input`` in order.

    ``transactions`` holds the topic's contract columns plus ``tx_fraud``; ``labels`` the labels topic's events.
    ``label_delay="realistic"`` re-times the label events first (:func:`realistic_labels`). With
    ``with_label_time``, a last column ``label_time`` gives when the transaction's label event arrives (NaT: never).
    """
    require_columns(transactions, (*TX_COLUMNS, "tx_fraud"), "transactions")
    require_columns(labels, LABEL_COLUMNS, "labels")
    if label_delay == "realistic":
        labels = realistic_labels(labels, seed=seed)
    elif label_delay != "handbook":
        msg = f"label_delay must be one of {LABEL_DELAYS}, got {label_delay!r}"
        raise UnknownOptionError(msg)
    events = {"transactions": transactions.loc[:, list(TX_COLUMNS)], "labels": labels.loc[:, list(LABEL_COLUMNS)]}
    vectors = compute_offline(FRAUD, events).vectors
    ids = vectors["transaction_id"]
    truth = transactions.drop_duplicates("transaction_id").set_index("transaction_id")["tx_fraud"]
    label = truth.reindex(ids).to_numpy()
    if pd.isna(label).any() or not np.isin(label, (0, 1)).all():
        msg = f"tx_fraud must be 0 or 1 for every transaction, got values {sorted(pd.unique(label).tolist())[:10]}"
        raise InvalidInputError(msg)
    out = vectors.loc[:, ["transaction_id", "customer_id", "event_time"]].copy()
    out["label"] = label.astype(np.int64)
    for name in FRAUD.model_input:
        out[name] = vectors[name].to_numpy(dtype=np.float64)
    if with_label_time:
        arrival = labels.drop_duplicates("transaction_id").set_index("transaction_id")["event_time"]
        out[LABEL_TIME] = arrival.reindex(ids).to_numpy()
    return out


def known_labels(frame: pd.DataFrame, known_by: str | date | datetime | pd.Timestamp) -> npt.NDArray[np.int64]:
    """``label`` where its label event has arrived by ``known_by``, else 0 (not reported yet: taken as genuine)."""
    require_columns(frame, ("label", LABEL_TIME), "frame")
    arrived = (frame[LABEL_TIME] <= utc_time(known_by)).to_numpy(dtype=bool)
    out: npt.NDArray[np.int64] = np.where(arrived, frame["label"].to_numpy(dtype=np.int64), 0)
    return out


__all__ = [
    "LABEL_DELAYS",
    "LABEL_TIME",
    "data_hash",
    "fraud_training_frame",
    "known_labels",
    "realistic_labels",
    "window",
]
