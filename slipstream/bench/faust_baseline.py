"""The Faust baseline for `slipstream bench features`: the least a Faust feature engine must do per event —
consume the transactions topic, decode the Avro value, update a changelog-backed Table — timed on the same
broker and data as Slipstream's engine. Run as a child process (Faust owns its event loop and argv)::

    python -m slipstream.bench.faust_baseline BOOTSTRAP TOPIC N
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

N_REPORT = "FAUST_EVENTS_PER_S"


def main(bootstrap: str, topic: str, expected: int) -> None:
    import faust

    from slipstream.schemas.contracts import Contracts

    prefix = topic.removesuffix("transactions")
    serde = Contracts.default(prefix).serde("transactions")
    app = faust.App(
        f"faust-baseline-{int(time.time())}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_replication_factor=1,
        topic_partitions=6,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        datadir=tempfile.mkdtemp(prefix="faust-baseline-"),
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    table = app.Table(
        f"faust-baseline-{int(time.time())}-state", default=bytes, partitions=6, key_type=bytes, value_type=bytes
    )
    state: dict[str, Any] = {"n": 0, "t0": None}

    @app.agent(source)
    async def features(stream: Any) -> None:
        async for key, value in stream.items():
            if state["t0"] is None:
                state["t0"] = time.perf_counter()
            record = serde.decode(value)
            table[key] = repr(record["amount"]).encode()  # one changelog write per event, as a Faust Table does
            state["n"] += 1
            if state["n"] >= expected:
                elapsed = time.perf_counter() - state["t0"]
                # Faust redirects print() into its logger: write to the real stdout.
                os.write(1, f"\n{N_REPORT}={state['n'] / elapsed:.0f}\n".encode())
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "error"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
