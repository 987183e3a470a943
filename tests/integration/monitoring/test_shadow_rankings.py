"""The shadow consumer and ranking challengers on the real broker and MLflow (tmp sqlite): every champion
recommendation re-ranked by every ranking challenger in force, the agreement measured exactly as
:mod:`slipstream.monitoring.ranking` measures it on the champion's order and the challenger's own ONNX order, each
comparison written once across a restart of the consumer (read_committed)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from slipstream.features.definitions.reco import FEATURES
from slipstream.models.artifacts import reference_distribution
from slipstream.models.registry import LoadedModel, ModelRegistry
from slipstream.monitoring.ranking import cutoff, kendall_tau, ndcg_at_k, overlap_at_k
from slipstream.monitoring.shadow import ShadowSettings, ShadowWorker
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from tests.conftest import Services
from tests.integration.monitoring.shadow_fixtures import FAST_GROUP, committed, registry_at, running
from tests.samples import T0

pytestmark = pytest.mark.integration

NAMES = tuple(FEATURES)
N = 120  # recommendations, half before and half after a restart of the consumer


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _register_ranker(registry: ModelRegistry, seed: int, rounds: int) -> str:
    """A small lambdarank LightGBM on random queries over the reco feature names, registered behind the parity gate
    as a ``ranking`` version of ``reco`` (no threshold: 0.0)."""
    rng = np.random.default_rng(seed)
    x = rng.random((2000, len(NAMES)))
    grade = x[:, 0] + x[:, 5] * rng.random(2000) + 0.5 * x[:, -1]
    y = np.digitize(grade, [0.8, 1.3])  # 0, 1, 2
    params = {"objective": "lambdarank", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed}
    data = lgb.Dataset(x, y, group=[20] * 100, feature_name=list(NAMES))
    booster = lgb.train(params, data, num_boost_round=rounds)
    registered = registry.register(
        "reco",
        booster,
        list(NAMES),
        threshold=0.0,
        reference=reference_distribution(x, booster.predict(x), list(NAMES), score_range=None),
        metrics={"ndcg_at_10": 0.5},
        params={"num_leaves": 7, "rounds": rounds},
        data_window=("2018-07-25", "2018-07-31"),
        data_hash=f"hash-{seed}",
        sample=x[:400],
    )
    return registered.version


def _items(i: int) -> list[dict[str, float]]:
    """The candidates of recommendation ``i`` (1 to 25 of them: under 2, under k = 10 and over it), each with
    every reco feature, a fixed function of ``i``."""
    rng = np.random.default_rng(50_000 + i)
    n = 1 + i % 25
    return [{name: float(v) for name, v in zip(NAMES, row, strict=True)} for row in rng.random((n, len(NAMES)))]


def _recommendation(i: int, champion: LoadedModel, model_name: str = "reco") -> dict[str, Any]:
    """The champion's recommendation ``i`` as score-stream --reco writes it: items best first, ranks 1.., scores
    and features as fed to the model."""
    candidates = _items(i)
    x = np.array([[c[n] for n in champion.feature_names] for c in candidates])
    scores = champion.scorer.predict(x)
    order = sorted(range(len(candidates)), key=lambda j: (-float(scores[j]), j))
    t = T0 + timedelta(seconds=i)
    return {
        "request_id": f"req-{i}",
        "user_id": 1000 + i % 37,
        "model_name": model_name,
        "model_version": champion.version,
        "items": [
            {"item_id": 10 * i + j, "score": float(scores[j]), "rank": rank, "features": candidates[j]}
            for rank, j in enumerate(order, start=1)
        ],
        "feature_event_time": t,
        "feature_age_ms": 12.0,
        "event_time": t,
        "scored_at": t,
        "received_at": None,
        "timings_us": {"total_us": 200.0},
        "source_offset": i,
    }


def _expected(rec: dict[str, Any], challenger: LoadedModel) -> dict[str, Any]:
    """What the comparison must say: the challenger's own ONNX scores of the champion's items, its order (score
    descending, ties in the champion's order) and monitoring.ranking's measures of it against the champion's."""
    items = sorted(rec["items"], key=lambda item: item["rank"])
    reference = [item["item_id"] for item in items]
    x = np.array([[item["features"][n] for n in challenger.feature_names] for item in items])
    scores = challenger.scorer.predict(x)
    other = [reference[j] for j in sorted(range(len(items)), key=lambda j: (-float(scores[j]), j))]
    k = cutoff(len(reference))
    return {
        "k": k,
        "n_items": len(reference),
        "overlap_at_k": overlap_at_k(reference, other),
        "kendall_tau": kendall_tau(reference, other),
        "ndcg_at_k": ndcg_at_k(reference, other),
        "top_changed": reference[0] != other[0],
        "challenger_items": other[:k],
    }


def _send(services: Services, contracts: Contracts, records: list[dict[str, Any]]) -> None:
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        for record in records:
            producer.send("recommendations", record)


def _settings() -> ShadowSettings:
    return ShadowSettings(models=("reco",), consumer_config=FAST_GROUP)


def test_ranking_challengers_rerank_every_recommendation_once(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    registry = registry_at(tmp_path)
    champion_v, second_v, third_v = (
        _register_ranker(registry, seed, rounds) for seed, rounds in ((1, 12), (2, 12), (3, 4))
    )
    registry.promote("reco", champion_v)
    registry.set_challenger("reco", second_v, "challenger")
    registry.set_challenger("reco", third_v, "challenger-b")
    champion = registry.load_version("reco", champion_v)
    challengers = {v: registry.load_version("reco", v) for v in (second_v, third_v)}
    assert champion.kind == "ranking" and all(c.kind == "ranking" for c in challengers.values())
    recs = [_recommendation(i, champion) for i in range(N)]
    lacking = _recommendation(N, champion)  # an item without a feature the challengers need: dead-lettered
    del lacking["items"][0]["features"][NAMES[3]]
    foreign = _recommendation(N + 1, champion, model_name="other-ranker")  # no challenger of its model: ignored

    # the first half, then the consumer stops; the second half (and the two odd ones) to a new consumer
    _send(services, contracts, recs[: N // 2])
    worker = ShadowWorker(services.bootstrap_servers, contracts, registry, _settings())
    with running(worker):
        assert worker.challengers.wait_for(lambda s: len(s) == 2, 60)
        _wait(lambda: worker.handler.counts.ranked >= N, f"{N} comparisons of the first {N // 2} recommendations")
    _send(services, contracts, [*recs[N // 2 :], lacking, foreign])
    again = ShadowWorker(services.bootstrap_servers, contracts, registry, _settings())
    with running(again):
        _wait(lambda: again.handler.counts.ranked >= N and again.handler.counts.dead_lettered >= 2, "the rest")
    assert worker.handler.counts.ranked + again.handler.counts.ranked == 2 * N

    got = committed(services.bootstrap_servers, contracts, "shadow-rankings")
    ids = Counter(r["comparison_id"] for r in got)
    assert [k for k, c in ids.items() if c > 1] == []  # no duplicates
    aliases = {second_v: "challenger", third_v: "challenger-b"}
    assert set(ids) == {f"req-{i}@{champion_v}~{v}" for i in range(N) for v in aliases}  # one per rec, challenger
    for record in got:
        rec = recs[int(record["request_id"].removeprefix("req-"))]
        version = record["challenger_version"]
        assert record["challenger_alias"] == aliases[version]
        assert record["champion_version"] == champion_v
        assert (record["user_id"], record["model_name"], record["event_time"]) == (
            rec["user_id"],
            "reco",
            rec["event_time"],
        )
        measured = {name: record[name] for name in _expected(rec, challengers[version])}
        assert measured == _expected(rec, challengers[version]), record["comparison_id"]
        assert record["challenger_latency_us"] > 0
    # the two rankers disagree somewhere, so the measures are not trivially 1
    assert min(r["kendall_tau"] for r in got) < 1.0 and any(r["top_changed"] for r in got)
    assert {r["n_items"] for r in got} == set(range(1, 26))

    dead = [d for d in committed(services.bootstrap_servers, contracts, "dead-letter") if d["processor"] == "shadow"]
    assert sorted(d["error_type"] for d in dead) == ["item_features_missing"] * 2  # one per challenger
    for letter in dead:
        assert contracts.serde("recommendations").decode(letter["original_value"])["request_id"] == f"req-{N}"
        assert NAMES[3] in letter["reason"]
