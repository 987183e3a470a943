"""`slipstream bench scorer`: the fraud scorer in-process and over HTTP, the naive stack beside it, a hot swap under
load — one run, one machine, real state (see :mod:`slipstream.bench.world`).

- in-process: ``FraudScorer.score(record)`` on held-out transactions (entity state read from Redis, exact features,
  ONNX Runtime), called open-loop at ``paced_rate`` so that calls never queue behind each other; each call timed.
- naive: what a team would write first, as Feast's own serving examples write it (``examples/credit-risk-end-to-end``
  and ``docs/tutorials/azure`` in feast-dev/feast: ``get_online_features(...).to_df()``, then the model's columns
  of that frame into ``predict``): Feast ``FeatureStore.get_online_features`` for the model's features (the rows the
  engine wrote, in Feast's layout) as a DataFrame, the request features added as columns, and LightGBM's
  scikit-learn ``predict_proba`` of a classifier with the same trees (fitted with the champion's parameters, one
  thread included, and tree count). ``naive_numpy``: the same with the rows taken from ``to_dict()`` into a numpy
  row, a hand-tuned variant, reported beside it. Run in blocks alternating with the in-process calls, so that all
  see the same machine noise. ``p99_ratio_vs_naive`` = naive p99 / in-process p99.
- http: ``slipstream serve`` (uvicorn, uvloop, httptools, one worker) in its own process, driven by the open-loop
  generator of :mod:`slipstream.bench.loadgen` at each rate of ``rates`` (latency from each request's *due* time).
  ``http_max_rps``: the highest tested rate at which the server kept up (successful responses >= 95 % of the
  rate), made no error and held p99 <= ``http_p99_target_ms``; ``http_max_achieved_rps``: the most successful
  responses per second seen at any rate. ``http_p50_ms`` / ``http_p99_ms``: the worst over tested rates <= 2,000
  req/s (the target's range).
- swap: at ``swap_rate`` for ``swap_seconds``, the second registered version is promoted (``ModelRegistry.promote``
  with a producer: the PROMOTED event goes to model-events) 40 % of the way in; errors, the versions that answered
  before and after, and the time from the event to the first answer by the new version.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from slipstream.bench.exceptions import BenchRunError, BenchTimeoutError
from slipstream.bench.loadgen import LoadProcess, LoadResult, LoadSpec, post_request, schedule, sleep_until
from slipstream.bench.stats import percentiles
from slipstream.bench.world import World, open_world, stop_child
from slipstream.features.definitions import FRAUD
from slipstream.features.windows import request_features
from slipstream.streams.publish import frame_records

Say = Callable[[str], None]
SCORE_PATH = "/v1/fraud/score"


@dataclass(frozen=True, slots=True)
class ScorerBenchConfig:
    load_days: int = 21
    heldout_days: int = 2
    inprocess_samples: int = 10_000
    naive_samples: int = 3_000
    paced_rate: float = 1_000.0
    warmup: int = 500
    blocks: int = 5
    rates: tuple[float, ...] = (500, 1_000, 2_000, 3_000, 4_000, 5_000)
    rate_seconds: float = 5.0
    connections: int = 8
    workers: int = 1  # `slipstream serve --workers`
    http_p99_target_ms: float = 2.0
    swap_rate: float = 500.0
    swap_seconds: float = 10.0
    parts: tuple[str, ...] = ("inprocess", "http", "swap")
    keep: bool = False


def _records(world: World, n: int) -> list[dict[str, Any]]:
    from slipstream.serving.fraud import normalize_transaction

    rows = frame_records(
        world.heldout.head(n)[["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]]
    )
    return [normalize_transaction(r) for r in rows]


def _paced(call: Callable[[int], None], indices: Sequence[int], rate: float) -> list[float]:
    """Call ``call(i)`` for each index on an open-loop schedule; the duration of each call in ms."""
    out: list[float] = []
    start = time.perf_counter() + 0.01
    clock = time.perf_counter_ns
    for offset, i in zip(schedule(rate, len(indices) / rate), indices, strict=True):
        sleep_until(start + offset)
        t0 = clock()
        call(i)
        out.append((clock() - t0) / 1e6)
    return out


def _summary(samples: Sequence[float], prefix: str) -> dict[str, Any]:
    stats = percentiles(samples)
    return {f"{prefix}_{k}": v for k, v in stats.items() if k != "n"} | {f"{prefix}_samples": stats["n"]}


def _naive_classifier(world: World) -> Any:
    """A scikit-learn ``LGBMClassifier`` with the champion's parameters and tree count, fitted on its training rows:
    the same trees (training is deterministic), behind the wrapper a naive stack calls."""
    import lightgbm as lgb

    model = world.fitted[0]
    params = {k: v for k, v in model.params.items() if k not in ("n_estimators", "objective", "metric")}
    names = list(model.feature_names)
    clf = lgb.LGBMClassifier(n_estimators=model.best_iteration, **params)
    clf.fit(world.train[names].to_numpy(dtype=np.float64), world.train["label"].to_numpy())
    return clf


def inprocess_and_naive(world: World, config: ScorerBenchConfig, say: Say) -> dict[str, Any]:
    from feast import FeatureStore

    from slipstream.serving.service import freeze_startup_heap

    n = max(config.inprocess_samples, config.naive_samples) + config.warmup
    records = _records(world, n)
    service = world.app.scoring_service(reco=False)
    service.start()
    try:
        if not service.fraud_slot.loaded:
            msg = (
                f"the scorer did not load the champion of {world.model!r}: {service.watcher and service.watcher.errors}"
            )
            raise BenchRunError(msg)
        scorer = service.fraud
        names = list(world.fitted[0].feature_names)
        refs = [f"{v.name}:{f}" for v in FRAUD.views for f in v.feature_names if f in names]
        store = FeatureStore(repo_path=str(world.feast.repo_dir))
        clf = _naive_classifier(world)
        parts: dict[str, list[float]] = {"redis_us": [], "features_us": [], "model_us": [], "feast": [], "predict": []}

        def fast(i: int) -> None:
            score = scorer.score(records[i])
            for key in ("redis_us", "features_us", "model_us"):
                parts[key].append(score.timings_us[key])

        def entity(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
            return [{"customer_id": rec["customer_id"], "terminal_id": rec["terminal_id"]}]

        def naive(i: int) -> None:  # Feast's examples: the online features as a DataFrame, its columns to the model
            rec = records[i]
            t0 = time.perf_counter_ns()
            frame = store.get_online_features(features=refs, entity_rows=entity(rec)).to_df()
            t1 = time.perf_counter_ns()
            for name, value in request_features(FRAUD.request, rec).items():
                frame[name] = value
            clf.predict_proba(frame[names].fillna(0.0))
            parts["feast"].append((t1 - t0) / 1e6)
            parts["predict"].append((time.perf_counter_ns() - t1) / 1e6)

        def naive_numpy(i: int) -> None:  # hand-tuned: a dict of lists into one numpy row
            rec = records[i]
            online = store.get_online_features(features=refs, entity_rows=entity(rec)).to_dict()
            values = request_features(FRAUD.request, rec)
            row = [values[f] if f in values else float(online[f][0] or 0.0) for f in names]
            clf.predict_proba(np.asarray([row], dtype=np.float64))

        freeze_startup_heap()  # as `serve` and `score-stream` run
        say(f"warming up the three stacks ({config.warmup} calls each)…")
        for call in (fast, naive, naive_numpy):
            _paced(call, range(config.warmup), config.paced_rate)
        for values in parts.values():
            values.clear()
        fast_ms: list[float] = []
        naive_ms: list[float] = []
        numpy_ms: list[float] = []
        say(
            f"in-process {config.inprocess_samples:,} and naive {config.naive_samples:,} calls (each variant) at "
            f"{config.paced_rate:g}/s, alternating in {config.blocks} blocks…"
        )
        for b in range(config.blocks):
            lo_f, hi_f = (
                config.inprocess_samples * b // config.blocks,
                config.inprocess_samples * (b + 1) // config.blocks,
            )
            lo_n, hi_n = (config.naive_samples * b // config.blocks, config.naive_samples * (b + 1) // config.blocks)
            fast_ms += _paced(fast, range(config.warmup + lo_f, config.warmup + hi_f), config.paced_rate)
            naive_ms += _paced(naive, range(config.warmup + lo_n, config.warmup + hi_n), config.paced_rate)
            numpy_ms += _paced(naive_numpy, range(config.warmup + lo_n, config.warmup + hi_n), config.paced_rate)
    finally:
        service.stop()
    out = _summary(fast_ms, "inprocess") | _summary(naive_ms, "naive") | _summary(numpy_ms, "naive_numpy")
    out["inprocess_breakdown_us"] = {
        k.removesuffix("_us"): {
            "p50": round(float(np.percentile(v, 50)), 1),
            "p99": round(float(np.percentile(v, 99)), 1),
        }
        for k, v in parts.items()
        if k.endswith("_us")
    }
    out["naive_breakdown_ms"] = {
        k: {"p50": round(float(np.percentile(v, 50)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
        for k, v in parts.items()
        if not k.endswith("_us")
    }
    for variant in ("naive", "naive_numpy"):
        for q in ("p50", "p99"):
            out[f"{q}_ratio_vs_{variant}"] = round(out[f"{variant}_{q}_ms"] / out[f"inprocess_{q}_ms"], 1)
    return out


# ---------------------------------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, orjson.loads(body) if body.startswith(b"{") else {}
    finally:
        conn.close()


class Server:
    """``slipstream serve`` in a child process joined to the run (its topics, Feast project and model names)."""

    def __init__(self, world: World, say: Say, workers: int = 1) -> None:
        self.port = _free_port()
        self.log_path = world.feast.repo_dir.parent.with_name(f"{world.tag}.serve.log")  # kept after the cleanup
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        say(f"starting `slipstream serve` on port {self.port} (log: {self.log_path})…")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own command, our own arguments
            [
                *(sys.executable, "-m", "slipstream", "serve", "--port", str(self.port)),
                *("--workers", str(workers), "--log-level", "warning"),
            ],
            env=world.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"`slipstream serve` exited with code {self.proc.returncode}; see {self.log_path}"
                raise BenchRunError(msg)
            try:
                status, report = _get(self.port, "/readyz")
                if status == 200:
                    self.version = str(report["models"]["fraud"]["version"])
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        msg = f"`slipstream serve` was not ready within 120 s; see {self.log_path}"
        raise BenchTimeoutError(msg)

    def served_version(self) -> str:
        return str(_get(self.port, "/readyz")[1]["models"]["fraud"]["version"])

    def stop(self) -> None:
        stop_child(self.proc, self._log)


def _bodies(world: World, n: int) -> list[bytes]:
    rows = frame_records(
        world.heldout.head(n)[["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]]
    )
    tokens = world.app.settings.accepted_scorer_tokens  # the server, a child, reads the same settings
    token = tokens[0].get_secret_value() if tokens else None
    out = []
    for r in rows:
        r["event_time"] = datetime.fromtimestamp(r["event_time"] / 1e6, tz=UTC).isoformat()
        out.append(post_request("127.0.0.1", SCORE_PATH, orjson.dumps(r), token))
    return out


def _rate_row(result: LoadResult) -> dict[str, Any]:
    stats = percentiles(result.ok_latencies())
    return {
        "rate": result.rate,
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "p999_ms": stats["p999_ms"],
        "max_ms": stats.get("max_ms"),
        "errors": result.errors,
        "sent": result.sent,
        "answered": result.answered,
        "achieved_rps": round(result.achieved_rps, 1),
        "max_backlog": result.max_backlog,
        "client_lag_p99_ms": percentiles(result.send_lag_ms)["p99_ms"],
    }


def http_rates(server: Server, requests: list[bytes], config: ScorerBenchConfig, say: Say) -> dict[str, Any]:
    def spec(rate: float, seconds: float) -> LoadSpec:
        return LoadSpec("127.0.0.1", server.port, requests, rate, seconds, config.connections)

    say("HTTP warm-up: 2 s at 500 req/s…")
    LoadProcess(spec(500.0, 2.0)).result()
    rows = []
    for rate in config.rates:
        result = LoadProcess(spec(float(rate), config.rate_seconds)).result()
        rows.append(_rate_row(result))
        say(
            f"  {rate:>6,.0f} req/s: p50 {rows[-1]['p50_ms']} ms, p99 {rows[-1]['p99_ms']} ms, "
            f"achieved {rows[-1]['achieved_rps']:,.0f}/s, errors {rows[-1]['errors']}"
        )
    extra = {"http_connections": config.connections, "http_workers": config.workers}
    return {"http": rows} | http_summary(rows, config.http_p99_target_ms) | extra


def http_summary(rows: Sequence[Mapping[str, Any]], p99_target_ms: float) -> dict[str, Any]:
    """The headline HTTP figures from the per-rate rows (see the module docstring for the definitions)."""
    kept = [
        r for r in rows if r["errors"] == 0 and r["achieved_rps"] >= 0.95 * r["rate"] and r["p99_ms"] <= p99_target_ms
    ]
    low = [r for r in rows if r["rate"] <= 2_000] or list(rows[:1])
    return {
        "http_p50_ms": max(r["p50_ms"] for r in low),
        "http_p99_ms": max(r["p99_ms"] for r in low),
        "http_max_rps": max((r["rate"] for r in kept), default=0.0),
        "http_max_achieved_rps": max(r["achieved_rps"] for r in rows),
        "http_samples": sum(r["answered"] for r in rows),
    }


def hot_swap(
    world: World, server: Server, requests: list[bytes], config: ScorerBenchConfig, say: Say
) -> dict[str, Any]:
    old, new = world.versions[0], world.versions[1]
    spec = LoadSpec(
        "127.0.0.1",
        server.port,
        requests,
        config.swap_rate,
        config.swap_seconds,
        config.connections,
        tag_marker=b'"version":"',
    )
    say(f"hot swap: {config.swap_rate:g} req/s for {config.swap_seconds:g} s, promoting v{new} (was v{old}) mid-way…")
    producer = world.app.producer()
    loader = LoadProcess(spec)
    start = loader.started()
    sleep_until(start + 0.4 * config.swap_seconds)
    promoted_at = time.perf_counter()
    world.app.model_registry.promote(world.model, new, producer=producer)
    producer.flush()
    published_at = time.perf_counter()
    result = loader.result()
    return swap_summary(result, old, new, promoted_at, published_at) | {
        "served_version_after": server.served_version(),
    }


def swap_summary(result: LoadResult, old: str, new: str, promoted_at: float, published_at: float) -> dict[str, Any]:
    """What a swap under load did: errors, versions that answered before the promotion and after the first answer
    of the new version (an old-version answer due after that would mean the swap was not atomic), how long from the
    model event to that first answer, and the latency around it."""
    done = [d + lat / 1000.0 for d, lat in zip(result.due, result.latency_ms, strict=True)]
    first_new = min((t for t, tag in zip(done, result.tags, strict=True) if tag == new), default=None)
    pairs = list(zip(result.due, result.tags, strict=True))
    before = Counter(tag for d, tag in pairs if d < promoted_at)
    after = Counter(tag for d, tag in pairs if first_new is not None and d > first_new)
    until = (first_new if first_new is not None else promoted_at) + 1.0
    around = percentiles(
        [lat for d, lat in zip(result.due, result.latency_ms, strict=True) if promoted_at <= d <= until]
    )
    stats = percentiles(result.ok_latencies())
    return {
        "rate": result.rate,
        "seconds": result.seconds,
        "sent": result.sent,
        "answered": result.answered,
        "errors": result.errors,
        "from_version": old,
        "to_version": new,
        "versions_before": dict(before),
        "versions_after": dict(after),
        "old_version_after_first_new": after.get(old, 0),
        "promote_call_s": round(published_at - promoted_at, 3),
        "swap_s": round(first_new - published_at, 3) if first_new is not None else None,
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "max_ms": stats.get("max_ms"),
        "p99_ms_during_swap": around["p99_ms"],
        "max_ms_during_swap": around.get("max_ms"),
    }


def run_scorer_bench(app: Any, config: ScorerBenchConfig, say: Say) -> dict[str, Any]:
    world, results = open_world(
        app, "scorer", load_days=config.load_days, heldout_days=config.heldout_days, keep_engine=False, say=say
    )
    try:
        if "inprocess" in config.parts:
            results |= inprocess_and_naive(world, config, say)
        if "http" in config.parts or "swap" in config.parts:
            requests = _bodies(world, 20_000)
            server = Server(world, say, config.workers)
            try:
                if "http" in config.parts:
                    results |= http_rates(server, requests, config, say)
                if "swap" in config.parts:
                    results["swap"] = hot_swap(world, server, requests, config, say)
            finally:
                server.stop()
        results["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        results["setup"] = world.setup
    finally:
        if not config.keep:
            world.cleanup(say)
    return results


__all__ = ["ScorerBenchConfig", "http_summary", "run_scorer_bench", "swap_summary"]
