"""The bounded join of predictions to the engine's ``feature-log`` vectors, by event id, for one input partition.

Needed only for a challenger whose feature list is not contained in the prediction's ``features`` map (a new
feature). ``feature-log`` is keyed like ``predictions`` (the trigger event's entity: the customer for fraud) and has
as many partitions, so an event's vector and its prediction share a partition number and one :class:`FeatureJoin`.
Either may come first: a vector waits for predictions, a prediction (*parked*, with the challengers it waits for)
waits for its vector.

Bound, per partition: at most ``max_entries`` entries (vectors and parked predictions together) and an event-time
span of ``span_us``. The clock is the newest event time the partition has seen (predictions and vectors alike), so
it moves with the stream, not the wall clock, and a replay repeats it. A vector stays while it is within the span
(several predictions of one event — two champion versions around a swap — all find it; a later vector of the same
event supersedes the earlier, as the feature-log contract says). Past the span, or pushed out by the entry bound
(oldest event time first), a vector is dropped and counted; a parked prediction is **never dropped silently**: it
is returned by :meth:`FeatureJoin.expire` and the consumer dead-letters it (``feature_vector_missing``: original
bytes, the challengers that waited, the reason), counted in :attr:`JoinCounts.expired`. A partition whose stream
stops keeps what it holds (in its changelog) until events move its clock again.

State changes are recorded as changelog entries (:meth:`FeatureJoin.changes`): ``v<feature set>\\0<event id>`` ->
vector, ``p<prediction id>`` -> parked prediction (its encoded bytes and where it was read), and the clock.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from slipstream.monitoring.exceptions import ShadowError

CLOCK_KEY = b"\x00clock"
_NEVER = -(2**62)


@dataclass(slots=True)
class Parked:
    """A prediction waiting for its event's vector, with what a dead letter needs to keep it whole."""

    prediction: Mapping[str, Any]
    raw: bytes  # the prediction as encoded on its topic
    waiting: tuple[tuple[str, str], ...]  # (alias, version) of the challengers that need the vector
    feature_set: str
    event_time_us: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None

    @property
    def prediction_id(self) -> str:
        return str(self.prediction["prediction_id"])

    def encode(self) -> bytes:
        meta = orjson.dumps(
            {
                "w": [list(pair) for pair in self.waiting],
                "fs": self.feature_set,
                "at": self.event_time_us,
                "tp": self.topic,
                "pa": self.partition,
                "of": self.offset,
                "ts": self.timestamp_ms,
                "k": self.key.hex() if self.key is not None else None,
            }
        )
        return struct.pack(">I", len(meta)) + meta + self.raw


@dataclass(slots=True)
class Vector:
    event_time_us: int
    features: dict[str, float]


@dataclass(slots=True)
class JoinCounts:
    vectors: int = 0  # vectors taken into the buffer
    parked: int = 0  # predictions that had to wait for their vector
    joined: int = 0  # parked predictions whose vector arrived
    expired: int = 0  # parked predictions whose vector never came within the bound (dead-lettered)
    vectors_dropped: int = 0  # vectors out of the span or pushed out by the entry bound


@dataclass(slots=True)
class FeatureJoin:
    """One partition's buffer. ``decode`` turns a parked prediction's bytes back into its record (restore)."""

    max_entries: int
    span_us: int
    decode: Callable[[bytes], Mapping[str, Any]]
    clock_us: int = _NEVER
    vectors: dict[tuple[str, str], Vector] = field(default_factory=dict)
    parked: dict[str, Parked] = field(default_factory=dict)
    counts: JoinCounts = field(default_factory=JoinCounts)
    _by_event: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _heap: list[tuple[int, int, str, str]] = field(default_factory=list)  # (time, kind 0 vector/1 parked, a, b)
    _changes: dict[bytes, bytes | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.span_us < 0:
            msg = f"the feature join needs max_entries >= 1 and span >= 0, got {self.max_entries}, {self.span_us}"
            raise ShadowError(msg)

    def __len__(self) -> int:
        return len(self.vectors) + len(self.parked)

    def _tick(self, event_time_us: int) -> None:
        if event_time_us > self.clock_us:
            self.clock_us = event_time_us
            self._changes[CLOCK_KEY] = str(event_time_us).encode()

    # --- inputs ---

    def on_vector(
        self, feature_set: str, event_id: str, event_time_us: int, features: Mapping[str, float]
    ) -> list[Parked]:
        """Take a vector; the parked predictions of its event, now complete (and no longer parked)."""
        self._tick(event_time_us)
        key = (feature_set, event_id)
        if event_time_us < self.clock_us - self.span_us:
            self.counts.vectors_dropped += 1  # already out of the span: nothing may wait for it any more
        else:
            self.vectors[key] = Vector(event_time_us, dict(features))
            heapq.heappush(self._heap, (event_time_us, 0, feature_set, event_id))
            self._changes[_vector_key(key)] = orjson.dumps({"at": event_time_us, "f": features})
            self.counts.vectors += 1
        done = [self.parked.pop(pid) for pid in sorted(self._by_event.pop(key, ()))]
        for parked in done:
            self._changes[_parked_key(parked.prediction_id)] = None
            self.counts.joined += 1
        return done

    def lookup(self, feature_set: str, event_id: str, event_time_us: int) -> dict[str, float] | None:
        """The event's vector, if buffered (a prediction's event time moves the clock too)."""
        self._tick(event_time_us)
        found = self.vectors.get((feature_set, event_id))
        return found.features if found is not None else None

    def park(self, parked: Parked) -> None:
        self._tick(parked.event_time_us)
        pid = parked.prediction_id
        self.parked[pid] = parked
        self._by_event.setdefault((parked.feature_set, str(parked.prediction["event_id"])), set()).add(pid)
        heapq.heappush(self._heap, (parked.event_time_us, 1, pid, ""))
        self._changes[_parked_key(pid)] = parked.encode()
        self.counts.parked += 1

    def expire(self) -> list[Parked]:
        """Drop what is out of the span or over the entry bound, oldest first; the parked predictions dropped."""
        expired: list[Parked] = []
        horizon = self.clock_us - self.span_us
        while self._heap and (self._heap[0][0] < horizon or len(self) > self.max_entries):
            at, kind, a, b = heapq.heappop(self._heap)
            if kind == 0:
                vector = self.vectors.get((a, b))
                if vector is not None and vector.event_time_us == at:
                    del self.vectors[(a, b)]
                    self._changes[_vector_key((a, b))] = None
                    self.counts.vectors_dropped += 1
            else:
                parked = self.parked.pop(a, None)
                if parked is not None and parked.event_time_us == at:
                    event = (parked.feature_set, str(parked.prediction["event_id"]))
                    waiting = self._by_event.get(event, set())
                    waiting.discard(a)
                    if not waiting:
                        self._by_event.pop(event, None)
                    self._changes[_parked_key(a)] = None
                    self.counts.expired += 1
                    expired.append(parked)
                elif parked is not None:
                    self.parked[a] = parked
        return expired

    # --- changelog ---

    def changes(self) -> Iterator[tuple[bytes, bytes | None]]:
        """The state changes since the last call (latest per key), for the changelog."""
        changes, self._changes = self._changes, {}
        yield from changes.items()

    def restore(self, state: Mapping[bytes, bytes]) -> None:
        """Rebuild from the changelog's latest value per key."""
        for key, value in state.items():
            if key == CLOCK_KEY:
                self.clock_us = max(self.clock_us, int(value))
            elif key.startswith(b"v"):
                feature_set, _, event_id = key[1:].decode().partition("\x00")
                data = orjson.loads(value)
                self.vectors[(feature_set, event_id)] = Vector(int(data["at"]), dict(data["f"]))
                heapq.heappush(self._heap, (int(data["at"]), 0, feature_set, event_id))
            elif key.startswith(b"p"):
                parked = self._decode_parked(value)
                pid = parked.prediction_id
                self.parked[pid] = parked
                event = (parked.feature_set, str(parked.prediction["event_id"]))
                self._by_event.setdefault(event, set()).add(pid)
                heapq.heappush(self._heap, (parked.event_time_us, 1, pid, ""))
        self._changes.clear()

    def _decode_parked(self, value: bytes) -> Parked:
        (size,) = struct.unpack(">I", value[:4])
        meta = orjson.loads(value[4 : 4 + size])
        raw = value[4 + size :]
        return Parked(
            prediction=self.decode(raw),
            raw=raw,
            waiting=tuple((str(a), str(v)) for a, v in meta["w"]),
            feature_set=str(meta["fs"]),
            event_time_us=int(meta["at"]),
            topic=str(meta["tp"]),
            partition=int(meta["pa"]),
            offset=int(meta["of"]),
            timestamp_ms=meta["ts"],
            key=bytes.fromhex(meta["k"]) if meta["k"] is not None else None,
        )


def _vector_key(key: tuple[str, str]) -> bytes:
    return b"v" + f"{key[0]}\x00{key[1]}".encode()


def _parked_key(prediction_id: str) -> bytes:
    return b"p" + prediction_id.encode()
