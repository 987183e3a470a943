"""Change detectors on a stream of numbers in [0, 1] (a realised error, a flip): pure state machines, one-sided.

``update(x) -> bool`` is True on the observation that detects an *increase* of the stream's mean; the detector then
resets (Page–Hinkley) or forgets the old part of its window (ADWIN). No clock, no I/O: the same inputs give the same
outputs, and ``to_dict()`` / ``from_dict()`` (JSON-able) carry the whole state across a restart.

False-alarm control:

* :class:`PageHinkley`: the cumulative sum m_t = sum (x_i - mean_i - delta) against its running minimum; an alarm
  when m_t - min m > lambda. For increments of variance s^2 the chance that one excursion ever crosses lambda is at
  most exp(-2 delta lambda / s^2) (Wald's bound for a random walk with drift -delta), which is the
  ``nominal_false_alarm_rate`` reported (s^2 estimated by the detector). :func:`page_hinkley_lambda` inverts it.
* :class:`Adwin`: a window cut when two sub-windows' means differ by more than the Bernstein bound
  eps = sqrt(2 var ln(2/d) / m) + 2 ln(2/d) / (3 m), d = delta / ln(n) (Bifet & Gavaldà 2007): a stationary stream
  is cut falsely with probability <= delta per check. Buckets form an exponential histogram (at most ``max_buckets``
  per size), so memory is O(max_buckets log n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Protocol


class ChangeDetector(Protocol):
    """What the monitor needs of a detector (the contract test checks every implementation)."""

    name: ClassVar[str]

    @property
    def n(self) -> int: ...  # observations since the last reset
    @property
    def value(self) -> float: ...  # the statistic compared with the threshold
    @property
    def threshold(self) -> float: ...
    @property
    def nominal_false_alarm_rate(self) -> float: ...
    def update(self, x: float) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...


def page_hinkley_lambda(rate: float, delta: float, variance: float) -> float:
    """The lambda whose false-alarm bound exp(-2 delta lambda / variance) is ``rate``."""
    return -math.log(rate) * variance / (2.0 * delta)


class PageHinkley:
    """One-sided Page–Hinkley test for an increase of the mean (module docstring)."""

    name: ClassVar[str] = "page_hinkley"

    def __init__(self, delta: float = 0.005, lambda_: float = 50.0, min_instances: int = 30) -> None:
        self.delta, self.lambda_, self.min_instances = delta, lambda_, min_instances
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0  # Welford's sum of squared deviations
        self._sum = 0.0
        self._min = 0.0
        self._value = 0.0

    @property
    def n(self) -> int:
        return self._n

    @property
    def value(self) -> float:
        return self._value

    @property
    def threshold(self) -> float:
        return self.lambda_

    @property
    def nominal_false_alarm_rate(self) -> float:
        variance = self._m2 / (self._n - 1) if self._n > 1 else 0.25  # a [0, 1] stream's largest variance
        return math.exp(-2.0 * self.delta * self.lambda_ / max(variance, 1e-12))

    def update(self, x: float) -> bool:
        self._n += 1
        step = x - self._mean
        self._mean += step / self._n
        self._m2 += step * (x - self._mean)
        self._sum += x - self._mean - self.delta
        self._min = min(self._min, self._sum)
        self._value = self._sum - self._min
        if self._n >= self.min_instances and self._value > self.lambda_:
            return True
        return False

    def after_alarm(self) -> None:
        """Start afresh (called by the owner once the alarm is recorded)."""
        self._reset()

    def to_dict(self) -> dict[str, Any]:
        state = [self._n, self._mean, self._m2, self._sum, self._min, self._value]
        return {"name": self.name, "params": [self.delta, self.lambda_, self.min_instances], "state": state}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageHinkley:
        delta, lambda_, min_instances = data["params"]
        out = cls(float(delta), float(lambda_), int(min_instances))
        n, out._mean, out._m2, out._sum, out._min, out._value = data["state"]
        out._n = int(n)
        return out


class Adwin:
    """ADWIN (adaptive windowing) alarming on an increase of the mean; the window shrinks on a change either way."""

    name: ClassVar[str] = "adwin"

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5, min_window: int = 5) -> None:
        self.delta, self.clock, self.max_buckets, self.min_window = delta, clock, max_buckets, min_window
        self._buckets: list[list[float]] = []  # [count, total, variance-sum], oldest first, counts non-increasing
        self._width = 0
        self._total = 0.0
        self._var = 0.0  # sum of squared deviations of the window
        self._ticks = 0
        self._n = 0
        self._value = 0.0
        self._eps = 0.0

    @property
    def n(self) -> int:
        return self._n

    @property
    def width(self) -> int:
        return self._width

    @property
    def value(self) -> float:
        return self._value

    @property
    def threshold(self) -> float:
        return self._eps

    @property
    def nominal_false_alarm_rate(self) -> float:
        return self.delta

    def _insert(self, x: float) -> None:
        if self._width:
            mean = self._total / self._width
            self._var += self._width * (x - mean) ** 2 / (self._width + 1)
        self._width += 1
        self._total += x
        self._buckets.append([1.0, x, 0.0])
        i = len(self._buckets) - 1
        while True:  # compress: more than max_buckets of one size -> merge the two oldest of that size
            size = self._buckets[i][0]
            j = i
            while j > 0 and self._buckets[j - 1][0] == size:
                j -= 1
            if i - j + 1 <= self.max_buckets:
                break
            a, b = self._buckets[j], self._buckets[j + 1]
            na, nb = a[0], b[0]
            merged = [na + nb, a[1] + b[1], a[2] + b[2] + na * nb / (na + nb) * (a[1] / na - b[1] / nb) ** 2]
            self._buckets[j : j + 2] = [merged]
            i = j

    def _drop_oldest(self) -> None:
        count, total, var = self._buckets.pop(0)
        mean_rest = (self._total - total) / (self._width - count) if self._width > count else 0.0
        self._var -= var + count * (self._width - count) / self._width * (total / count - mean_rest) ** 2
        self._width -= int(count)
        self._total -= total
        self._var = max(self._var, 0.0)

    def _cut(self) -> tuple[bool, bool]:
        """(a cut was made, the recent part's mean is the larger)."""
        variance = self._var / self._width
        log_term = math.log(2.0 * math.log(self._width) / self.delta)
        n0, s0 = 0, 0.0
        for count, total, _ in self._buckets[:-1]:
            n0 += int(count)
            s0 += total
            n1 = self._width - n0
            if n0 < self.min_window or n1 < self.min_window:
                continue
            m = 1.0 / (1.0 / n0 + 1.0 / n1)
            eps = math.sqrt(2.0 * variance * log_term / m) + 2.0 * log_term / (3.0 * m)
            diff = (self._total - s0) / n1 - s0 / n0
            self._value, self._eps = abs(diff), eps
            if abs(diff) > eps:
                return True, diff > 0
        return False, False

    def update(self, x: float) -> bool:
        self._n += 1
        self._insert(x)
        self._ticks += 1
        if self._ticks % self.clock or self._width < 2 * self.min_window:
            return False
        increase, seen = False, (0.0, 0.0)
        while self._width >= 2 * self.min_window:
            cut, up = self._cut()
            if not cut:
                break
            if up and not increase:
                increase, seen = True, (self._value, self._eps)
            self._drop_oldest()  # forget the old part one bucket at a time, re-checking after each
        if increase:
            self._value, self._eps = seen  # the alarm's difference and bound, not the last re-check's
        return increase

    def after_alarm(self) -> None:
        """Count observations afresh from the alarm (the window itself already forgot the old regime)."""
        self._n = 0

    def to_dict(self) -> dict[str, Any]:
        params = [self.delta, self.clock, self.max_buckets, self.min_window]
        state = [self._width, self._total, self._var, self._ticks, self._n, self._value, self._eps]
        return {"name": self.name, "params": params, "state": state, "buckets": [list(b) for b in self._buckets]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Adwin:
        delta, clock, max_buckets, min_window = data["params"]
        out = cls(float(delta), int(clock), int(max_buckets), int(min_window))
        width, out._total, out._var, ticks, n, out._value, out._eps = data["state"]
        out._width, out._ticks, out._n = int(width), int(ticks), int(n)
        out._buckets = [[float(c), float(t), float(v)] for c, t, v in data["buckets"]]
        return out


DETECTORS: Final[dict[str, type[PageHinkley] | type[Adwin]]] = {"page_hinkley": PageHinkley, "adwin": Adwin}


def detector_from_dict(data: Mapping[str, Any]) -> PageHinkley | Adwin:
    """Rebuild any detector from its :meth:`to_dict`."""
    return DETECTORS[str(data["name"])].from_dict(data)


__all__ = ["DETECTORS", "Adwin", "ChangeDetector", "PageHinkley", "detector_from_dict", "page_hinkley_lambda"]
