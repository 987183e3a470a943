"""The classic-introsort reproduction: fast path == literal transcription == numpy's classic C code."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from slipstream.streams.simulate import introsort
from slipstream.streams.simulate.introsort import introsort_argsort, reference_argsort

# sha256 of the '<i8' permutation that numpy's classic ``aquicksort_`` (numpy 2.4.6, datetime64 path, which
# numpy does not dispatch to SIMD) returns for each input: pins the reference to the real C algorithm.
CLASSIC_NUMPY_DIGESTS = {
    "wrap": (
        [(i * 7919) % 1009 for i in range(6000)],
        "600747a29341fe3caf0f6d13a47fcae501c2864f32daf1b0c04c06a2a6e1f2d9",
    ),
    "organ": (
        list(range(3000)) + list(range(3000, 0, -1)),
        "e1d14471c02e781aa5cbb1bfe01db23f69e1fdbae53641b95ee13a264391c518",
    ),
    "few": ([(i * 31) % 7 for i in range(2000)], "a010ad8bc3283a43284a4bdf1d9d291bc9586b49f33f93136c8b2575021f5205"),
    "sawtooth": ([i % 50 for i in range(4000)], "aee69996514671d535449c42b74e4d6d3d7ad7f4f19b138552fb723d672b59dc"),
}


def _digest(perm: object) -> str:
    return hashlib.sha256(np.asarray(perm, dtype="<i8").tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(CLASSIC_NUMPY_DIGESTS))
def test_reference_and_fast_path_match_numpys_classic_introsort(name: str) -> None:
    keys, digest = CLASSIC_NUMPY_DIGESTS[name]
    assert _digest(reference_argsort(keys)) == digest
    assert _digest(introsort_argsort(np.asarray(keys))) == digest


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_equals_reference_on_random_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 4000))
    keys = rng.integers(0, int(rng.integers(1, n + 2)), size=n)
    expected = reference_argsort(keys.tolist())
    got = introsort_argsort(keys)
    assert got.tolist() == expected
    assert np.all(np.diff(keys[got]) >= 0)


def _killer_keys(n: int) -> list[int]:
    """McIlroy's adversary against this quicksort: keys that exhaust the depth budget (heapsort path)."""
    gas = n
    value = [gas] * n
    state = {"solid": 0, "candidate": 0}

    class Probe:
        __slots__ = ("i",)

        def __init__(self, i: int) -> None:
            self.i = i

        def __lt__(self, other: Probe) -> bool:
            x, y = self.i, other.i
            if value[x] == gas and value[y] == gas:
                frozen = x if x == state["candidate"] else y
                value[frozen] = state["solid"]
                state["solid"] += 1
            if value[x] == gas:
                state["candidate"] = x
            elif value[y] == gas:
                state["candidate"] = y
            return value[x] < value[y]

    probes: list[Any] = [Probe(i) for i in range(n)]  # compared like ints, valued lazily
    budget = introsort._depth_budget(n)
    introsort._introsort_lists(probes, list(range(n)), 0, n - 1, budget, popped=True, insertion=True)
    return value


@pytest.mark.parametrize("transform", ["plain", "halved", "mod", "doubled"])
def test_heapsort_fallback_is_reproduced(transform: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = np.asarray(_killer_keys(2000))
    keys = {
        "plain": base,
        "halved": base // 2,
        "mod": base % 1000,
        "doubled": np.concatenate([base, base]),
    }[transform]
    heapsorts: list[int] = []
    real = introsort._heapsort_lists

    def counting(ks: list[int], ix: list[int], pl: int, pr: int) -> None:
        heapsorts.append(pr - pl + 1)
        real(ks, ix, pl, pr)

    monkeypatch.setattr(introsort, "_heapsort_lists", counting)
    expected = reference_argsort(keys.tolist())
    assert heapsorts, "the adversarial input should reach numpy's heapsort fallback"
    assert introsort_argsort(keys).tolist() == expected


def test_rejects_non_1d_keys() -> None:
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        introsort_argsort(np.zeros((2, 2), dtype=np.int64))


def test_trivial_sizes() -> None:
    assert introsort_argsort(np.array([], dtype=np.int64)).tolist() == []
    assert introsort_argsort(np.array([5])).tolist() == [0]
    assert reference_argsort([]) == []
