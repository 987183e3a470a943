"""``watermarks``: a restore asks again while a partition's leader is elected or moves (a broker restarting), and
fails with one line naming the partition on any other error or once its patience is spent."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from slipstream.streams.engine import restore
from slipstream.streams.engine.exceptions import StateError


class _Reader:
    """A consumer whose watermark calls raise the given errors, then answer."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.calls = 0
        self.refreshed: list[str] = []

    def list_topics(self, topic: str, timeout: float) -> None:
        self.refreshed.append(topic)

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 3, 42


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore.time, "sleep", lambda _s: None)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,  # a stale metadata cache while node 1 restarts (the chaos drill in CI)
        KafkaError.REQUEST_TIMED_OUT,
    ],
)
def test_a_moving_leader_is_asked_again(code: int) -> None:
    reader: Any = _Reader([code, code])
    assert restore.watermarks(reader, TopicPartition("t.changelog", 2)) == (3, 42)
    assert reader.calls == 3
    assert reader.refreshed == ["t.changelog", "t.changelog"]  # a stale metadata cache is refreshed each time


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL]
)
def test_an_error_no_waiting_cures_fails_at_once_naming_the_partition(code: int) -> None:
    reader: Any = _Reader([code])
    with pytest.raises(StateError, match=r"cannot read the offsets of t\.changelog\[2\]"):
        restore.watermarks(reader, TopicPartition("t.changelog", 2))
    assert reader.calls == 1


def test_patience_runs_out() -> None:
    reader: Any = _Reader([KafkaError._TIMED_OUT] * 1000)
    with pytest.raises(StateError, match=r"t\.changelog\[0\] \(asked for"):
        restore.watermarks(reader, TopicPartition("t.changelog", 0), timeout_s=0.0)
    assert reader.calls == 1
