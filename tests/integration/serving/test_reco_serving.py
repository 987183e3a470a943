"""Recommendations on the real Redis, broker and MLflow: the online features equal training's construction value for
value; HTTP and ``score-stream --reco`` rank with the registered LambdaRank champion and agree; a bad candidate is a
422 (HTTP) or a dead letter (Kafka); an unreachable Redis is a 503, never a ranking."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from slipstream.app import Slipstream
from slipstream.features.definitions.reco import RECO
from slipstream.features.feast_repo import view_layouts
from slipstream.features.offline import EVENT_TIMESTAMP, compute_offline
from slipstream.features.online_store import FeatureRow, RedisFeatureWriter
from slipstream.models.artifacts import reference_distribution
from slipstream.models.reco import (
    FEATURES,
    candidate_frame,
    cutoffs,
    future_labels,
    predict_scores,
    train_ranker,
    training_frame,
)
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from slipstream.serving.http import create_app
from slipstream.serving.reco import RecoRowReader, feature_matrix, normalize_reco_request
from slipstream.settings import load_settings
from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions
from tests.conftest import Services
from tests.integration.serving.fixtures import cli_env
from tests.integration.serving.http_server import Client, free_port, running

pytestmark = pytest.mark.integration
CONFIG = RecoSimConfig(n_users=150, n_items=400, n_categories=8, days=23, seed=11)
UNKNOWN_USER = 10_000  # the store has never seen this user: every user row is missing
SCORE_TOL = 1e-5  # the ONNX ranker's output is float32


@dataclass
class RecoWorld:
    services: Services
    contracts: Contracts
    project: str
    app: Slipstream
    version: str
    cutoff: pd.Timestamp
    frame: pd.DataFrame  # candidate_frame at the cut-off, with the booster's scores
    users: list[int]

    def body(self, user: int, **extra: Any) -> dict[str, Any]:
        group = self.frame[self.frame["user_id"] == user]
        return {
            "request_id": f"req-{user}",
            "user_id": user,
            "event_time": self.cutoff.isoformat(),
            "candidates": [
                {"item_id": int(i), "category_id": int(c), "retrieval_views_7d": float(v)}
                for i, c, v in zip(group["item_id"], group["category_id"], group["ITEM_RECENT_VIEWS_7D"], strict=True)
            ],
            **extra,
        }


def _write_store(services: Services, project: str, view_rows: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> int:
    """Every view row at or before ``cutoff``, in event order, through the engine's writer: the store at the cut-off."""
    layouts = view_layouts([RECO], project)
    writer = RedisFeatureWriter.from_url(services.redis_url, layouts.values())
    written = 0
    for view in RECO.views:
        rows = view_rows[view.name]
        rows = rows[rows[EVENT_TIMESTAMP] <= cutoff]
        keys = list(view.entity.join_keys)
        names = list(view.feature_names)
        batch = [
            FeatureRow(
                view.name,
                {k: int(record[k]) for k in keys},
                {n: float(record[n]) for n in names},
                record[EVENT_TIMESTAMP].to_pydatetime(),
            )
            for record in rows[[*keys, EVENT_TIMESTAMP, *names]].to_dict("records")
        ]
        for start in range(0, len(batch), 5000):
            report = writer.write_batch(batch[start : start + 5000])
            assert not report.rejected
            written += report.applied + report.stale
    return written


@pytest.fixture(scope="module")
def world(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecoWorld]:
    catalog = TopicCatalog(f"t-{uuid.uuid4().hex[:10]}.")
    base = Contracts.default()
    contracts = Contracts(catalog, base.registry, base.framing)
    admin = TopicAdmin(services.bootstrap_servers)
    admin.apply(catalog)
    project = f"t{uuid.uuid4().hex[:8]}"
    sim = simulate_interactions(CONFIG)
    view_rows = compute_offline(RECO, {"interactions": sim.events}).view_rows
    final, _ = cutoffs(CONFIG)
    cutoff = final + pd.Timedelta(hours=3, minutes=17, seconds=5, microseconds=123_456)
    assert _write_store(services, project, view_rows, cutoff) > 10_000

    train = training_frame(sim, view_rows, seed=3)
    model = train_ranker(train, seed=3, params={"n_estimators": 40})
    settings = load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        state_dir=tmp_path_factory.mktemp("reco-state"),
        feast_project=project,
        topic_prefix=catalog.prefix,
    )
    app = Slipstream(settings)
    names = list(FEATURES)
    x = train[names].to_numpy(dtype=np.float64)
    registered = app.model_registry.register(
        "reco",
        model.booster,
        names,
        threshold=0.0,
        reference=reference_distribution(x, predict_scores(model, train), names, score_range=None),
        metrics={"ndcg_at_10": 0.5},
        params=model.params,
        data_window=(CONFIG.start, str(cutoff.date())),
        data_hash="test",
        sample=x,
    )
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        app.model_registry.promote("reco", registered.version, producer=producer)

    users = [0, 7, 33, 101, UNKNOWN_USER]
    frame = candidate_frame(sim, view_rows, cutoff, users, future_labels(sim, cutoff))
    frame["booster_score"] = predict_scores(model, frame)
    yield RecoWorld(services, contracts, project, app, registered.version, cutoff, frame, users)
    admin.delete(catalog.full_names())


def _expected(world: RecoWorld, user: int) -> pd.DataFrame:
    return world.frame[world.frame["user_id"] == user].set_index("item_id")


def test_online_features_equal_the_training_construction(world: RecoWorld) -> None:
    reader = RecoRowReader.from_url(world.services.redis_url, view_layouts([RECO], world.project))
    for user in world.users:
        query = normalize_reco_request(world.body(user) | {"event_time": world.cutoff.value // 1000})
        rows = reader.read_rows(user, query.candidates)
        got = feature_matrix(query.event_time_us, query.candidates, rows)
        expected = world.frame.loc[world.frame["user_id"] == user, list(FEATURES)].to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(got, expected, err_msg=f"user {user}")
        if user == UNKNOWN_USER:
            assert rows.user is None and all(r is None for r in rows.user_items)
        else:
            assert rows.user is not None and rows.newest_us is not None
            assert rows.newest_us <= query.event_time_us


def _check_ranking(world: RecoWorld, user: int, answer: dict[str, Any]) -> None:
    expected = _expected(world, user)
    items = answer["items"]
    assert [i["rank"] for i in items] == list(range(1, len(expected) + 1))
    assert sorted(i["item_id"] for i in items) == sorted(expected.index)
    scores = [i["score"] for i in items]
    assert all(a >= b for a, b in zip(scores, scores[1:], strict=False))  # best first
    position = {item: k for k, item in enumerate(expected.index)}
    for a, b in zip(items, items[1:], strict=False):
        if a["score"] == b["score"]:
            assert position[a["item_id"]] < position[b["item_id"]]  # ties keep the candidate order
    for item in items:
        row = expected.loc[item["item_id"]]
        assert item["features"] == {name: float(row[name]) for name in FEATURES}  # exactly training's values
        assert abs(item["score"] - row["booster_score"]) <= SCORE_TOL  # the registered model's own score


def test_http_ranks_with_the_champion_and_refuses_bad_candidates(world: RecoWorld) -> None:
    service = world.app.scoring_service(contracts=world.contracts, project=world.project)
    with running(create_app(service)) as port:
        client = Client(port)
        status, ready = client.request("GET", "/readyz")
        assert ready["models"]["reco"] == {"loaded": True, "version": world.version}
        for user in world.users:
            status, answer = client.request("POST", "/v1/recommendations", world.body(user, include_features=True))
            assert status == 200, answer
            assert answer["request_id"] == f"req-{user}" and answer["user_id"] == user
            assert answer["model"] == {"name": "reco", "version": world.version}
            assert answer["event_time"] == world.cutoff.isoformat()
            assert set(answer["timings_us"]) == {"redis_us", "features_us", "model_us", "total_us"}
            if user != UNKNOWN_USER:
                assert 0 <= answer["feature_age_ms"] < 3 * 86_400_000
            _check_ranking(world, user, answer)

        status, top = client.request("POST", "/v1/recommendations", world.body(7, top_k=3, request_id=None))
        assert status == 200 and len(top["items"]) == 3 and "features" not in top["items"][0]
        assert len(top["request_id"]) == 32  # generated

        bad = world.body(7)
        bad["candidates"][1]["category_id"] = -4
        status, answer = client.request("POST", "/v1/recommendations", bad)
        assert status == 422 and answer["error"] == "invalid_request"
        assert answer["problems"][0]["field"] == "candidates.1.category_id" and answer["problems"][0]["input"] == -4
        duplicate = world.body(7)
        duplicate["candidates"].append(duplicate["candidates"][0])
        status, answer = client.request("POST", "/v1/recommendations", duplicate)
        item = duplicate["candidates"][0]["item_id"]
        assert status == 422 and f"item_id={item} repeats candidates[0]" in answer["detail"]
        naive = world.body(7) | {"event_time": "2024-01-20T03:17:05"}
        status, answer = client.request("POST", "/v1/recommendations", naive)
        assert status == 422 and "timezone" in answer["detail"]
        client.close()


def test_unreachable_redis_is_a_503_never_a_ranking(world: RecoWorld) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = Slipstream(world.app.settings.model_copy(update={"redis_url": SecretStr(closed)}))
    service = app.scoring_service(contracts=world.contracts, project=world.project)
    with running(create_app(service)) as port:
        client = Client(port)
        status, ready = client.request("GET", "/readyz")
        assert status == 503 and ready["redis"] is False and ready["models"]["reco"]["loaded"] is True
        status, answer = client.request("POST", "/v1/recommendations", world.body(7))
        client.close()
    assert status == 503 and answer["error"] == "features_unavailable"
    assert "Redis" in answer["detail"]


def _drain(world: RecoWorld, topic: str, expected: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with EventConsumer(world.services.bootstrap_servers, world.contracts, [topic]) as consumer:
        idle = 0
        while len(out) < expected and idle < 20:
            batch = consumer.poll_batch(1000, 0.5)
            assert batch.failures == []
            out += [e.value for e in batch.events]
            idle = 0 if batch.events else idle + 1
    return out


def test_score_stream_reco_from_requests_to_recommendations(world: RecoWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    when = world.cutoff.to_pydatetime()
    requests = [world.body(user) | {"event_time": when, "top_k": None} for user in world.users]
    requests[1]["request_id"] = None  # the stream names it by its place in the topic
    requests[2]["top_k"] = 5
    duplicate = world.body(33) | {"request_id": "dup", "event_time": when, "top_k": None}
    duplicate["candidates"] = [duplicate["candidates"][0]] * 2
    with EventProducer(world.services.bootstrap_servers, world.contracts) as producer:
        for request in [*requests, duplicate]:
            producer.send("recommendation-requests", request)

    from slipstream.cli import app as cli  # the command itself, in this process

    for name, value in cli_env(world.services, world.app, world.project).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(
        cli, ["score-stream", "--reco", "--from-beginning", "--until-idle", "3", "--quiet"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output

    got = {r["user_id"]: r for r in _drain(world, "recommendations", len(requests))}
    assert sorted(got) == sorted(world.users)
    for user, record in got.items():
        assert (record["model_name"], record["model_version"]) == ("reco", world.version)
        assert record["event_time"] == when and record["scored_at"] >= record["received_at"]
        assert record["source_offset"] is not None and set(record["timings_us"]) >= {"redis_us", "total_us"}
        if user == world.users[2]:
            assert [i["rank"] for i in record["items"]] == [1, 2, 3, 4, 5]
        else:
            _check_ranking(world, user, record)
    assert got[world.users[0]]["request_id"] == f"req-{world.users[0]}"
    assert got[world.users[1]]["request_id"].startswith(world.contracts.topic("recommendation-requests") + "/")

    dead = _drain(world, "dead-letter", 1)
    assert [(d["error_type"], d["processor"]) for d in dead] == [("invalid_value", "score-stream-reco")]
    assert "repeats candidates[0]" in dead[0]["reason"]
