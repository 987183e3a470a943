"""numpy's classic introsort argsort, reproduced so that ties come out in the same order on every machine.

Why this exists: the Fraud Detection Handbook sorts its transactions with pandas' default
``sort_values`` (``kind="quicksort"``), i.e. numpy's *unstable* introsort, and numbers them by position
(``TRANSACTION_ID``). With the default config 112,894 distinct seconds are shared by more than one
transaction (125,523 tied pairs), so the published ids depend on how that particular algorithm
happens to order equal keys.

What we found (numpy 2.4.6, pandas 2.3.3, x86-64 with AVX-512), checked row by row against the
published per-day files:

* ``argsort(kind="quicksort")`` on ``int64``/``float64`` is dispatched at run time to x86-simd-sort
  (AVX-512 or AVX2; newer numpy also has a Highway argsort for ARM), so its tie order depends on the
  CPU. Here it puts 119,005 of the 1,754,155 transactions at another id than the published one.
* ``datetime64``, which is what pandas hands to numpy for ``TX_DATETIME``, is not dispatched today,
  so ``sort_values`` still runs the classic introsort and agrees with this module and with every
  published ``TRANSACTION_ID``. That is a detail of numpy's dispatch table, not a promise, so the
  simulator does not rely on it.
* The tie order only moves ids: with the SIMD order, a stable order or this one, exactly the same
  transactions are fraud, with the same scenarios (973 / 9,077 / 4,631). Only same-customer ties
  could change scenario 3's draw, and none falls in a compromised window.

The algorithm (numpy ``npysort/quicksort.cpp``, ``aquicksort_``; unchanged since numarray):
median-of-three pivot, Hoare partition with sentinels, larger part pushed on a stack, smaller part
continued; ranges of at most 16 items are insertion-sorted; a range *popped from the stack* whose
depth budget (2·floor(log2 n), decremented per partition) is negative is heap-sorted instead.

Fast reproduction, exact by construction:

1. Insertion sort is stable, and after partitioning every range only holds keys between those of
   its neighbours, so all the final insertion sorts together equal one global *stable* sort of the
   arrangement the partitions leave. Stable sorting has a unique answer, whatever the CPU.
2. A range without two equal keys ends up plainly sorted whatever happens inside it, so it is
   left to that final stable sort.
3. One Hoare partition is computed with numpy in O(m): with L the ascending positions holding a
   key >= pivot and R the descending positions holding a key <= pivot, the scans swap L[k] with
   R[k] while L[k] < R[k], and the pivot lands at min(L[K], R[K-1]) (L[0] if nothing was swapped).
   Small ranges run the literal algorithm on Python lists.

:func:`reference_argsort` is the literal, slow transcription, kept as the test oracle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from slipstream.streams.simulate.exceptions import SimulationInputError

__all__ = ["introsort_argsort", "reference_argsort"]

IntArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.intp]

_SMALL_QUICKSORT = 15  # numpy: ranges with pr - pl <= 15 (16 items) are insertion-sorted
_LIST_CUTOFF = 384  # below this many items the literal algorithm on lists beats numpy calls


def _depth_budget(n: int) -> int:
    """numpy's ``npy_get_msb(n) * 2``."""
    return 2 * max(n.bit_length() - 1, 0)


def _heapsort_lists(ks: list[int], ix: list[int], pl: int, pr: int) -> None:
    """numpy's ``aheapsort_`` on positions pl..pr; a[i] is position pl + i - 1 (1-based heap)."""
    n = pr - pl + 1
    base = pl - 1
    for start in range(n >> 1, 0, -1):
        tk, ti = ks[base + start], ix[base + start]
        i, j = start, start << 1
        while j <= n:
            if j < n and ks[base + j] < ks[base + j + 1]:
                j += 1
            if tk < ks[base + j]:
                ks[base + i], ix[base + i] = ks[base + j], ix[base + j]
                i, j = j, j + j
            else:
                break
        ks[base + i], ix[base + i] = tk, ti
    while n > 1:
        tk, ti = ks[base + n], ix[base + n]
        ks[base + n], ix[base + n] = ks[base + 1], ix[base + 1]
        n -= 1
        i, j = 1, 2
        while j <= n:
            if j < n and ks[base + j] < ks[base + j + 1]:
                j += 1
            if tk < ks[base + j]:
                ks[base + i], ix[base + i] = ks[base + j], ix[base + j]
                i, j = j, j + j
            else:
                break
        ks[base + i], ix[base + i] = tk, ti


def _introsort_lists(
    ks: list[int], ix: list[int], pl: int, pr: int, cdepth: int, *, popped: bool, insertion: bool
) -> None:
    """The literal ``aquicksort_`` loop on ``ks``/``ix`` (kept aligned) over positions pl..pr.

    ``popped`` says whether this range came off numpy's stack (only those get the depth check);
    ``insertion=False`` leaves the small ranges for the caller's final stable sort.
    """
    stack: list[tuple[int, int, int]] = []
    check = popped
    while True:
        if check and cdepth < 0:
            _heapsort_lists(ks, ix, pl, pr)
        else:
            while pr - pl > _SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)
                if ks[pm] < ks[pl]:
                    ks[pm], ks[pl], ix[pm], ix[pl] = ks[pl], ks[pm], ix[pl], ix[pm]
                if ks[pr] < ks[pm]:
                    ks[pr], ks[pm], ix[pr], ix[pm] = ks[pm], ks[pr], ix[pm], ix[pr]
                if ks[pm] < ks[pl]:
                    ks[pm], ks[pl], ix[pm], ix[pl] = ks[pl], ks[pm], ix[pl], ix[pm]
                vp = ks[pm]
                pi, pj = pl, pr - 1
                ks[pm], ks[pj], ix[pm], ix[pj] = ks[pj], ks[pm], ix[pj], ix[pm]
                while True:
                    pi += 1
                    while ks[pi] < vp:
                        pi += 1
                    pj -= 1
                    while vp < ks[pj]:
                        pj -= 1
                    if pi >= pj:
                        break
                    ks[pi], ks[pj], ix[pi], ix[pj] = ks[pj], ks[pi], ix[pj], ix[pi]
                pk = pr - 1
                ks[pi], ks[pk], ix[pi], ix[pk] = ks[pk], ks[pi], ix[pk], ix[pi]
                cdepth -= 1
                if pi - pl < pr - pi:
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            if insertion:
                for p in range(pl + 1, pr + 1):
                    vk, vi = ks[p], ix[p]
                    q = p
                    while q > pl and vk < ks[q - 1]:
                        ks[q], ix[q] = ks[q - 1], ix[q - 1]
                        q -= 1
                    ks[q], ix[q] = vk, vi
        if not stack:
            return
        pl, pr, cdepth = stack.pop()
        check = True


def reference_argsort(keys: Sequence[int]) -> list[int]:
    """Literal transcription of numpy's classic ``argsort(kind="quicksort")``; slow, for tests."""
    ks = [int(k) for k in keys]
    ix = list(range(len(ks)))
    if len(ks) > 1:
        _introsort_lists(ks, ix, 0, len(ks) - 1, _depth_budget(len(ks)), popped=True, insertion=True)
    return ix


def _swap(ks: IntArray, ix: IndexArray, a: int, b: int) -> None:
    ks[a], ks[b] = ks[b], ks[a]
    ix[a], ix[b] = ix[b], ix[a]


def _partition(ks: IntArray, ix: IndexArray, pl: int, pr: int) -> int:
    """One median-of-three Hoare partition of pl..pr, vectorised; returns the pivot's position."""
    pm = pl + ((pr - pl) >> 1)
    if ks[pm] < ks[pl]:
        _swap(ks, ix, pm, pl)
    if ks[pr] < ks[pm]:
        _swap(ks, ix, pr, pm)
    if ks[pm] < ks[pl]:
        _swap(ks, ix, pm, pl)
    vp = ks[pm]
    _swap(ks, ix, pm, pr - 1)
    seg = ks[pl:pr]  # positions pl..pr-1; ks[pr-1] == vp and ks[pl] <= vp are the sentinels
    left = np.flatnonzero(seg[1:] >= vp) + (pl + 1)
    right = np.flatnonzero(seg[:-1] <= vp)[::-1] + pl
    common = min(left.size, right.size)
    n_swaps = int(np.count_nonzero(left[:common] < right[:common]))  # a prefix: left rises, right falls
    if n_swaps == 0:
        pi = int(left[0])
    else:
        a, b = left[:n_swaps], right[:n_swaps]
        ks_a, ix_a = ks[a], ix[a]
        ks[a], ix[a] = ks[b], ix[b]
        ks[b], ix[b] = ks_a, ix_a
        pi = int(right[n_swaps - 1])
        if n_swaps < left.size:
            pi = min(pi, int(left[n_swaps]))
    _swap(ks, ix, pi, pr - 1)
    return pi


def _tied_mask(keys: IntArray) -> npt.NDArray[np.bool_]:
    """True for every item whose key occurs more than once in ``keys``."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    dup = ordered[1:] == ordered[:-1]
    tied_sorted = np.zeros(keys.size, dtype=np.bool_)
    tied_sorted[1:] |= dup
    tied_sorted[:-1] |= dup
    tied = np.empty_like(tied_sorted)
    tied[order] = tied_sorted
    return tied


def introsort_argsort(keys: npt.ArrayLike) -> IndexArray:
    """The permutation numpy's classic ``argsort(kind="quicksort")`` returns, on any platform.

    Integer keys only (the simulator sorts whole seconds). Exact, including the order of ties.
    """
    ks: IntArray = np.array(keys, dtype=np.int64, copy=True)
    if ks.ndim != 1:
        msg = f"introsort_argsort needs a 1-d array of keys, got shape {ks.shape}"
        raise SimulationInputError(msg)
    n = ks.size
    ix: IndexArray = np.arange(n, dtype=np.intp)
    if n <= 1:
        return ix
    tied = _tied_mask(ks)
    # (pl, pr, cdepth, popped): a range still to partition, as numpy's loop would reach it.
    todo: list[tuple[int, int, int, bool]] = [(0, n - 1, _depth_budget(n), True)]
    while todo:
        pl, pr, cdepth, popped = todo.pop()
        if pr - pl <= _SMALL_QUICKSORT or np.count_nonzero(tied[ix[pl : pr + 1]]) < 2:
            continue  # insertion sort or tie-free: the final stable sort gives its exact order
        if (popped and cdepth < 0) or pr - pl < _LIST_CUTOFF:
            sub_k: list[int] = ks[pl : pr + 1].tolist()
            sub_i: list[int] = ix[pl : pr + 1].tolist()
            _introsort_lists(sub_k, sub_i, 0, pr - pl, cdepth, popped=popped, insertion=False)
            ks[pl : pr + 1] = sub_k
            ix[pl : pr + 1] = sub_i
            continue
        pi = _partition(ks, ix, pl, pr)
        cdepth -= 1
        if pi - pl < pr - pi:
            todo.append((pi + 1, pr, cdepth, True))
            todo.append((pl, pi - 1, cdepth, False))
        else:
            todo.append((pl, pi - 1, cdepth, True))
            todo.append((pi + 1, pr, cdepth, False))
    result: IndexArray = ix[np.argsort(ks, kind="stable")]
    return result
