"""The contract every change detector meets (one test, every implementation) and Page–Hinkley's lambda."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from slipstream.monitoring.drift.detectors import Adwin, PageHinkley, detector_from_dict, page_hinkley_lambda

RATE = 0.1  # stationary Bernoulli rate
# Page–Hinkley's lambda for a bound of 1e-6 per excursion at this rate's variance
PH_LAMBDA = page_hinkley_lambda(1e-6, 0.01, RATE * (1 - RATE))
FACTORIES: dict[str, Callable[[], PageHinkley | Adwin]] = {
    "page_hinkley": lambda: PageHinkley(delta=0.01, lambda_=PH_LAMBDA),
    "adwin": lambda: Adwin(delta=0.002),
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Callable[[], PageHinkley | Adwin]:
    return FACTORIES[request.param]


def test_no_alarm_on_a_stationary_bernoulli_stream(make: Callable[[], PageHinkley | Adwin]) -> None:
    detector = make()
    draws = np.random.default_rng(11).random(100_000) < RATE
    assert not any(detector.update(float(x)) for x in draws)
    assert detector.n == 100_000 and 0.0 < detector.nominal_false_alarm_rate < 0.01


def test_a_step_increase_is_detected_soon(make: Callable[[], PageHinkley | Adwin]) -> None:
    detector = make()
    rng = np.random.default_rng(12)
    for x in rng.random(5_000) < RATE:
        assert not detector.update(float(x))
    delay = next((i for i, x in enumerate(rng.random(5_000) < 3 * RATE) if detector.update(float(x))), None)
    assert delay is not None and delay < 1_000
    assert detector.value > detector.threshold


def test_a_decrease_raises_no_alarm(make: Callable[[], PageHinkley | Adwin]) -> None:
    detector = make()
    rng = np.random.default_rng(13)
    stream = np.concatenate([rng.random(5_000) < 3 * RATE, rng.random(20_000) < RATE])
    assert not any(detector.update(float(x)) for x in stream)


def test_a_round_trip_through_json_gives_identical_behaviour(make: Callable[[], PageHinkley | Adwin]) -> None:
    rng = np.random.default_rng(14)
    stream = np.concatenate([rng.random(3_000) < RATE, rng.random(3_000) < 4 * RATE]).astype(float).tolist()
    original = make()
    for x in stream[:2_500]:
        original.update(x)
    copy = detector_from_dict(json.loads(json.dumps(original.to_dict())))
    assert type(copy) is type(original) and copy.to_dict() == original.to_dict()
    rest = stream[2_500:]
    assert [original.update(x) for x in rest] == [copy.update(x) for x in rest]
    assert copy.to_dict() == original.to_dict()


def test_page_hinkley_lambda_inverts_the_bound() -> None:
    detector = PageHinkley(delta=0.01, lambda_=page_hinkley_lambda(1e-4, 0.01, 0.09))
    for x in [0.0] * 9 + [1.0]:  # variance 0.1
        detector.update(x)
    assert detector.nominal_false_alarm_rate == pytest.approx(np.exp(-2 * 0.01 * detector.lambda_ / 0.1))
    assert page_hinkley_lambda(1e-4, 0.01, 0.09) == pytest.approx(-np.log(1e-4) * 0.09 / 0.02)
