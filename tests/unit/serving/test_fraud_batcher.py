"""FraudBatcher: requests that arrive in the same loop pass are scored in one batch, in order; a failure reaches
every request of its batch; nothing waits forever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from slipstream.serving.exceptions import FeaturesUnavailableError
from slipstream.serving.http import FraudBatcher


class _Fraud:
    def __init__(self, fail: Exception | None = None, poison: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.poison = poison

    def score_batch(self, records: list[dict[str, Any]]) -> list[str]:
        self.batches.append([r["transaction_id"] for r in records])
        if self.fail is not None:
            raise self.fail
        if any(r["transaction_id"] == self.poison for r in records):
            msg = f"record {self.poison} breaks the scorer"
            raise ValueError(msg)
        return [f"score-{r['transaction_id']}" for r in records]


class _Service:
    def __init__(self, fraud: _Fraud) -> None:
        self.fraud = fraud
        self.observed: list[int] = []

    def observe_fraud(self, front: str, scores: list[Any]) -> None:
        self.observed.append(len(scores))


def _batcher(fraud: _Fraud, max_batch: int = 64) -> tuple[FraudBatcher, _Service]:
    service = _Service(fraud)
    return FraudBatcher(service, max_batch=max_batch), service  # type: ignore[arg-type]


def test_requests_of_one_pass_share_a_batch_and_get_their_own_score() -> None:
    fraud = _Fraud()
    batcher, service = _batcher(fraud)

    async def main() -> list[Any]:
        async def one(i: int) -> Any:
            return await batcher.score({"transaction_id": i})

        together = await asyncio.gather(*(one(i) for i in range(5)))
        alone = await one(99)
        return [*together, alone]

    assert asyncio.run(main()) == [*(f"score-{i}" for i in range(5)), "score-99"]
    assert fraud.batches == [[0, 1, 2, 3, 4], [99]]
    assert service.observed == [5, 1]


def test_max_batch_splits_a_burst() -> None:
    fraud = _Fraud()
    batcher, _ = _batcher(fraud, max_batch=2)

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.score({"transaction_id": i}) for i in range(5)))

    assert asyncio.run(main()) == [f"score-{i}" for i in range(5)]
    assert fraud.batches == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("error", [FeaturesUnavailableError("Redis is down"), RuntimeError("a bug")])
def test_a_failure_reaches_every_request_of_the_batch(error: Exception) -> None:
    batcher, service = _batcher(_Fraud(fail=error))

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.score({"transaction_id": i}) for i in range(3)), return_exceptions=True)

    assert asyncio.run(main()) == [error, error, error]
    assert service.observed == []


def test_a_record_that_breaks_the_scorer_fails_alone() -> None:
    fraud = _Fraud(poison=1)
    batcher, service = _batcher(fraud)

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.score({"transaction_id": i}) for i in range(3)), return_exceptions=True)

    first, second, third = asyncio.run(main())
    assert (first, third) == ("score-0", "score-2")
    assert isinstance(second, ValueError)
    assert "record 1" in str(second)
    assert fraud.batches == [[0, 1, 2], [0], [1], [2]]
    assert service.observed == [2]
