"""Progress reports from a stage: at once when urgent, otherwise throttled, and never lost."""

from __future__ import annotations

from slipstream.streams.engine.runner import ReportGate


def test_the_first_change_is_reported_at_once() -> None:
    gate = ReportGate(0.1)
    assert gate.due(5.0, changed=True)


def test_changes_within_the_interval_wait_for_it() -> None:
    gate = ReportGate(0.1)
    assert gate.due(5.0, changed=True)
    assert not gate.due(5.03, changed=True)
    assert not gate.due(5.06, changed=True)
    assert gate.due(5.11, changed=True)


def test_a_change_not_yet_reported_goes_out_on_a_later_idle_call() -> None:
    gate = ReportGate(0.1)
    assert gate.due(5.0, changed=True)
    assert not gate.pending
    assert not gate.due(5.02, changed=True)  # held back
    assert gate.pending  # what a stage that stops now still owes its caller
    assert gate.due(5.2, changed=False)  # nothing new since, but the held-back change is still owed
    assert not gate.due(5.5, changed=False)  # owed nothing any more


def test_nothing_is_reported_without_a_change() -> None:
    gate = ReportGate(0.1)
    assert not gate.due(5.0, changed=False)
    assert not gate.due(9.0, changed=False)


def test_an_urgent_report_ignores_the_interval() -> None:
    gate = ReportGate(0.1)
    assert gate.due(5.0, changed=True)
    assert gate.due(5.01, changed=False, urgent=True)
    assert not gate.due(5.02, changed=True)
