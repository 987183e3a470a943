"""PipelineDrain: when a run "until idle" stops each stage — in topology order, the first once its input stopped
growing for the idle time and is all committed, each later one once the one before it stopped and it is all
committed; a failed read is "not yet", never "done"."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from slipstream.streams.engine.exceptions import LagError
from slipstream.streams.engine.lag import DrainStage, PipelineDrain

STAGES = [DrainStage("customer", "g-customer", ("tx", "labels")), DrainStage("terminal", "g-terminal", ("fwd",))]


class FakeLag:
    """A group's (committed, end) over time, one value per check; a LagError where the script says so."""

    def __init__(self, script: Iterator[tuple[int, int] | None]) -> None:
        self._script = script
        self.closed = False

    def progress(self) -> tuple[int, int]:
        value = next(self._script)
        if value is None:
            msg = "broker restarting"
            raise LagError(msg)
        return value

    def close(self) -> None:
        self.closed = True


def _drain(
    scripts: Mapping[str, Sequence[tuple[int, int] | None]], idle_s: float
) -> tuple[PipelineDrain, dict[str, FakeLag]]:
    opened: dict[str, FakeLag] = {}

    def reader(stage: DrainStage) -> FakeLag:
        opened[stage.name] = FakeLag(iter(scripts[stage.name]))
        return opened[stage.name]

    return PipelineDrain("unused:9092", STAGES, idle_s=idle_s, check_s=1.0, quiet_checks=3, reader=reader), opened


def _run(drain: PipelineDrain, checks: int) -> list[tuple[float, str]]:
    stopped = []
    for t in range(checks):
        stage = drain.due(now=float(t))
        if stage is not None:
            stopped.append((float(t), stage))
    return stopped


def test_stages_stop_in_order_each_once_all_is_committed() -> None:
    customer = [(0, 10), (5, 10), (10, 10), (10, 10), (10, 10)]
    terminal = [(3, 8), (8, 8), (8, 8), (8, 8)]
    drain, opened = _drain({"customer": customer, "terminal": terminal}, idle_s=2.0)
    assert _run(drain, 9) == [(4.0, "customer"), (8.0, "terminal")]
    assert drain.done and drain.current is None
    assert opened["customer"].closed and opened["terminal"].closed


def test_the_first_stage_waits_until_its_input_stopped_growing_for_the_idle_time() -> None:
    # all committed from the start, but the input grows until t=3: drained at t=3+5 at the earliest
    customer = [(10, 10), (20, 20), (30, 30), (40, 40)] + [(40, 40)] * 10
    drain, _ = _drain({"customer": customer, "terminal": [(0, 0)] * 10}, idle_s=5.0)
    stopped = _run(drain, 12)
    assert stopped[0] == (8.0, "customer")


def test_a_later_stage_that_stalls_is_never_stopped() -> None:
    # the downstream stage gets nothing for a long time (its upstream rebalancing): lag stays, nothing stops
    drain, _ = _drain({"customer": [(10, 10)] * 6, "terminal": [(0, 5)] * 50}, idle_s=1.0)
    assert _run(drain, 50) == [(2.0, "customer")]
    assert drain.current == "terminal" and drain.behind == 5


def test_a_failed_read_restarts_the_quiet_count() -> None:
    customer = [(10, 10), (10, 10), None, (10, 10), (10, 10), (10, 10)]
    drain, _ = _drain({"customer": customer, "terminal": [(0, 0)] * 5}, idle_s=0.0)
    assert _run(drain, 6)[0] == (5.0, "customer")


def test_checks_are_spaced() -> None:
    drain, _ = _drain({"customer": [(1, 1)] * 3, "terminal": []}, idle_s=0.0)
    assert drain.due(now=0.0) is None
    assert drain.due(now=0.5) is None  # too soon: not read (the script would run dry otherwise)
    assert drain.due(now=1.0) is None
    assert drain.due(now=2.0) == "customer"
