"""The recommendations half of the demo: the clickstream's features in the online store, the requests a retrieval
stage would send, and a client that sends them to `slipstream serve` while the card traffic streams.

The clickstream is the reco simulator's (`slipstream train reco` trains on the same one), cut off at the start of its
last week, as the ranker's protocol does (:func:`slipstream.models.reco.fit_reco`). It does not stream live here: its
feature rows at the cut-off — each entity's latest row of every reco view, what the engine would have left in Redis —
are materialized into this run's Feast project, the offline store's rows copied to the online store, as Feast's
``materialize`` does. The requests are the held-out users' retrieval candidates at the cut-off, dated at the cut-off,
so every answer can be judged against what those users did in the week after: NDCG@10 of the served top 10 over
all their relevant items, the protocol's metric, online.

Each request also goes to ``recommendation-requests``, where `score-stream --reco` ranks it onto ``recommendations``
and `slipstream shadow` re-ranks the champion's list with the reco challenger (``shadow-rankings``): the HTTP
endpoint publishes nothing to Kafka, so the stream path is the one a shadow can see. On Kafka the request asks for
every candidate back (``top_k`` null), not the top 10: a challenger re-ranks the candidates the champion ranked, and
given only the champion's top 10 its overlap@10 would be 1 by construction.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from slipstream.demo.exceptions import DemoError
from slipstream.demo.probe import HttpScorer
from slipstream.demo.stats import LiveStats, RecoStats
from slipstream.schemas.exceptions import SlipstreamError

if TYPE_CHECKING:
    import pandas as pd

    from slipstream.models.reco import RecoFit
    from slipstream.schemas.transport import EventProducer

TOP_K = 10
EVERY_S = 0.05  # a recommendation request every 50 ms: ~20/s beside the card traffic
_BATCH = 5000


def materialize(redis_url: str, project: str, view_rows: Mapping[str, pd.DataFrame], cutoff: pd.Timestamp) -> int:
    """Write each entity's latest row at or before ``cutoff`` of every reco view into ``project``'s online store,
    through the engine's writer; return the rows written."""
    from slipstream.features.definitions.reco import RECO
    from slipstream.features.feast_repo import view_layouts
    from slipstream.features.offline import EVENT_TIMESTAMP, latest_view_rows
    from slipstream.features.online_store import FeatureRow, RedisFeatureWriter

    writer = RedisFeatureWriter.from_url(redis_url, view_layouts([RECO], project).values())
    written = 0
    for view in RECO.views:
        rows = view_rows[view.name]
        latest = latest_view_rows({view.name: rows[rows[EVENT_TIMESTAMP] <= cutoff]})[view.name]
        keys, names = list(view.entity.join_keys), list(view.feature_names)
        batch = [
            FeatureRow(
                view.name,
                {k: int(record[k]) for k in keys},
                {n: float(record[n]) for n in names},
                record[EVENT_TIMESTAMP].to_pydatetime(),
            )
            for record in latest[[*keys, EVENT_TIMESTAMP, *names]].to_dict("records")
        ]
        for start in range(0, len(batch), _BATCH):
            report = writer.write_batch(batch[start : start + _BATCH])
            if report.rejected:
                msg = f"the online store refused {len(report.rejected)} {view.name} rows: {report.rejected[0]}"
                raise DemoError(msg)
            written += report.applied
    return written


REQUESTS = "recommendation-requests"


@dataclass(frozen=True, slots=True)
class RecoQuery:
    """One request body and what its answer is judged by: the user's future grade per item and the ideal DCG@10;
    ``request``: the same request as a ``recommendation-requests`` record, all candidates asked back, no id yet."""

    body: bytes
    user_id: int
    gains: Mapping[int, float]
    ideal_dcg: float
    request: Mapping[str, Any] = field(default_factory=dict)

    def record(self, request_id: str) -> dict[str, Any]:
        """The ``recommendation-requests`` record of this request under ``request_id``."""
        return {**self.request, "request_id": request_id}


def _dcg(gains: list[float]) -> float:
    g = np.asarray(gains[:TOP_K], dtype=np.float64)
    return float(((2.0**g - 1.0) / np.log2(np.arange(len(g)) + 2.0)).sum())


def reco_queries(fit: RecoFit) -> list[RecoQuery]:
    """The held-out users' requests at the cut-off (their retrieval candidates, the best :data:`TOP_K` asked back),
    in user order."""
    from slipstream.features.definitions.reco import POPULARITY

    when = fit.cutoff.isoformat()
    event_time: datetime = fit.cutoff.to_pydatetime()
    gains_of: dict[int, dict[int, float]] = {}
    for user, item, label in zip(fit.truth["user_id"], fit.truth["item_id"], fit.truth["label"], strict=True):
        gains_of.setdefault(int(user), {})[int(item)] = float(label)
    queries = []
    for _, group in fit.test.groupby("user_id", sort=True):
        user = int(group["user_id"].iloc[0])
        gains = gains_of.get(user, {})
        candidates = [
            {"item_id": int(i), "category_id": int(c), "retrieval_views_7d": float(v)}
            for i, c, v in zip(group["item_id"], group["category_id"], group[POPULARITY], strict=True)
        ]
        body = {"user_id": user, "event_time": when, "candidates": candidates, "top_k": TOP_K}
        request = {"user_id": user, "event_time": event_time, "candidates": candidates, "top_k": None}
        ideal = _dcg(sorted(gains.values(), reverse=True))
        queries.append(RecoQuery(orjson.dumps(body), user, gains, ideal, request))
    return queries


def served_ndcg(query: RecoQuery, items: list[dict[str, Any]]) -> float:
    """NDCG@10 of the served items (in their rank order) against the user's future grades."""
    if query.ideal_dcg <= 0:
        return float("nan")
    return _dcg([float(query.gains.get(int(item["item_id"]), 0)) for item in items]) / query.ideal_dcg


class RecoClient(HttpScorer):
    """`slipstream serve`'s recommendations endpoint and the reco line of its readiness."""

    def reco_version(self) -> str | None:
        """The reco model version ``/readyz`` says is loaded, else None."""
        try:
            _, payload = self._request("GET", "/readyz")
            reco = orjson.loads(payload).get("models", {}).get("reco", {})
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            return None
        return str(reco["version"]) if reco.get("loaded") else None

    def has_reco(self, reco: RecoStats) -> bool:
        """Whether the reco champion the demo registered is loaded (noted in ``reco.loaded``); True without one."""
        if not reco.registered:
            return True
        reco.loaded = self.reco_version()
        return reco.loaded == reco.registered

    def recommend(self, body: bytes) -> tuple[float, dict[str, Any]]:
        """POST one request; (round trip in ms, the answer)."""
        started = time.perf_counter()
        status, payload = self._request("POST", "/v1/recommendations", body)
        elapsed = (time.perf_counter() - started) * 1000
        answer: dict[str, Any] = orjson.loads(payload)
        if status != 200:
            msg = f"HTTP {status}: {answer.get('detail', answer)}"
            raise DemoError(msg)
        return elapsed, answer


def probe_reco(
    client: RecoClient,
    queries: list[RecoQuery],
    stats: LiveStats,
    stop: threading.Event,
    interval_s: float = EVERY_S,
    *,
    stream: EventProducer | None = None,
    id_prefix: str = "demo-reco-",
) -> None:
    """Send the requests in turn (round and round) every ``interval_s``; count, time and judge the answers. With
    ``stream``, each request also goes to ``recommendation-requests`` as ``<id_prefix><n>`` (its send time noted for
    the comparison lag)."""
    i = 0
    while queries and not stop.wait(interval_s):
        query = queries[i % len(queries)]
        i += 1
        if stream is not None and query.request:
            request_id = f"{id_prefix}{i}"
            try:
                stream.send(REQUESTS, query.record(request_id))
            except SlipstreamError:
                stats.reco.stream_errors += 1
            else:
                stats.reco.streamed += 1
                stats.verdicts.on_request(request_id, time.time() * 1000)
        try:
            elapsed, answer = client.recommend(query.body)
        except (OSError, http.client.HTTPException, DemoError, ValueError):
            stats.reco.errors += 1
            continue
        stats.reco.on_answer(elapsed, answer, served_ndcg(query, answer.get("items", [])))
    client.close()
