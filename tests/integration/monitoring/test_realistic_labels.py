"""The label join and realised performance on the simulator's realistic label delays (frauds reported after a
lognormal delay, median 2 days; genuine payments confirmed at 30 days' maturity), through the real broker: scores
and labels published in event-time order, `outcomes` run as in production, the book read back — every score joined
to its label, and the realised figures per version and day equal to an offline join of the same records."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from slipstream.models.dataset import realistic_labels
from slipstream.monitoring.monitor import read_book
from slipstream.monitoring.outcomes.processor import JoinSettings, run_outcomes
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from slipstream.streams.simulate.fraud import FraudSimConfig, label_events, simulate_transactions, to_transaction_events
from tests.conftest import Services
from tests.samples import sample


def _stream() -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[pd.Timestamp, str, dict[str, Any]]]]:
    config = FraudSimConfig(n_customers=300, n_terminals=600, nb_days=40)
    raw = simulate_transactions(config)
    tx = to_transaction_events(raw).assign(is_fraud=raw["TX_FRAUD"].to_numpy(dtype=bool))
    labels = realistic_labels(label_events(raw, config))
    labels["event_time"] = labels["event_time"].dt.floor("us")  # Avro times are microseconds
    rng = np.random.default_rng(8)
    fraud = tx["is_fraud"].to_numpy()
    # two models that see the truth through different noise: the challenger a little sharper
    tx["score_1"] = 1 / (1 + np.exp(-(2.0 * fraud - 3.0 + rng.normal(0, 1.2, len(tx)))))
    tx["score_2"] = 1 / (1 + np.exp(-(2.5 * fraud - 3.0 + rng.normal(0, 1.2, len(tx)))))
    records: list[tuple[pd.Timestamp, str, dict[str, Any]]] = []
    for row in tx.itertuples(index=False):
        eid, t, customer = str(row.transaction_id), row.event_time.to_pydatetime(), int(row.customer_id)
        p = sample("prediction") | {"prediction_id": f"{eid}@1", "event_id": eid, "customer_id": customer}
        p |= {"model_version": "1", "score": row.score_1, "decision": row.score_1 >= 0.5, "event_time": t}
        p |= {"terminal_id": int(row.terminal_id)}
        c = sample("shadow_comparison") | {"comparison_id": f"{eid}@1~2", "prediction_id": f"{eid}@1"}
        c |= {"event_id": eid, "customer_id": customer, "event_time": t, "challenger_version": "2"}
        c |= {"champion_score": row.score_1, "challenger_score": row.score_2, "challenger_decision": row.score_2 >= 0.5}
        c |= {"challenger_threshold": 0.5, "flip": (row.score_1 >= 0.5) != (row.score_2 >= 0.5)}
        records += [(row.event_time, "predictions", p), (row.event_time, "shadow-comparisons", c)]
    for label in labels.to_dict("records"):
        record = {k: v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for k, v in label.items()}
        records.append((label["event_time"], "labels", record))
    records.sort(key=lambda r: r[0])  # as a live system publishes them: in event time
    return tx, labels, records


@pytest.mark.timeout(600)
def test_realistic_delays_join_every_score_and_the_figures_equal_an_offline_join(
    services: Services, contracts: Contracts
) -> None:
    tx, labels, records = _stream()
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=20) as producer:
        for _, topic, record in records:
            producer.send(topic, record)
        producer.flush()
    stats, counts = run_outcomes(
        services.bootstrap_servers, contracts, JoinSettings(), threading.Event(), until_idle_s=5
    )
    # a fraud reported after the horizon (30 + 1 days; the lognormal's tail) answers nothing: its two scores are
    # written unlabelled at the horizon and the label as one without prediction — the rest is joined
    delay = labels.set_index("transaction_id")["event_time"] - labels.set_index("transaction_id")["tx_event_time"]
    late = int((delay > pd.Timedelta(days=31)).sum())
    assert 0 < late < 50
    assert counts.labelled == 2 * (len(tx) - late) and counts.unlabelled == 2 * late and counts.orphan_labels == late
    assert stats.produced == 2 * len(tx) + late

    summary = read_book(services.bootstrap_servers, contracts).summary(("day", "all"))
    rows = {(r["model_version"], r["period"], r["key"]): r for r in summary["performance"]}
    truth = labels.set_index("transaction_id")
    frame = tx.join(
        truth[["is_fraud", "event_time"]].rename(columns={"is_fraud": "label", "event_time": "known"}),
        on="transaction_id",
    )
    frame = frame[frame["known"] - frame["event_time"] <= pd.Timedelta(days=31)]  # the scores that were labelled
    frame["day"] = frame["event_time"].dt.strftime("%Y-%m-%d")
    delays_h = (frame["known"] - frame["event_time"]) / pd.Timedelta(hours=1)
    checked = 0
    for version in ("1", "2"):
        score = frame[f"score_{version}"].to_numpy()
        y = frame["label"].to_numpy(dtype=bool)
        whole = rows[(version, "all", "all")]
        assert whole["labelled"] == len(frame) and whole["seen"] == len(tx)
        assert whole["unlabelled_at_horizon"] == late and whole["label_coverage"] == len(frame) / len(tx)
        assert whole["mature"] is True
        assert whole["average_precision"] == pytest.approx(average_precision_score(y, score), abs=1e-12)
        assert whole["auc_roc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert whole["label_delay_hours"]["p50"] == pytest.approx(float(np.percentile(delays_h, 50)), rel=1e-9)
        for day, part in frame.groupby("day"):
            row = rows[(version, "day", str(day))]
            yd, sd = part["label"].to_numpy(dtype=bool), part[f"score_{version}"].to_numpy()
            assert row["labelled"] == len(part) and row["mature"] is True
            if yd.any() and not yd.all():
                assert row["average_precision"] == pytest.approx(average_precision_score(yd, sd), abs=1e-12)
                checked += 1
    assert checked > 40  # most days hold frauds: the figures were compared day by day
    # genuine payments wait 30 days for their label, frauds ~2: the delays are the simulator's, not a fixed 7 days
    assert whole["label_delay_hours"]["p50"] == pytest.approx(30 * 24, rel=1e-6)
    assert float(np.median(delays_h[frame["label"]])) < 5 * 24
