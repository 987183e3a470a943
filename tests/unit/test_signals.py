"""`stop_on`: a signal sets the stop event from a thread, never inside the handler, so a storm of signals landing
while the main thread holds the event's lock neither deadlocks nor recurses."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from slipstream.signals import stop_on


@pytest.fixture
def usr1() -> Iterator[int]:
    previous = signal.getsignal(signal.SIGUSR1)
    yield signal.SIGUSR1
    signal.signal(signal.SIGUSR1, previous)


def test_a_signal_sets_the_event(usr1: int) -> None:
    stop = threading.Event()
    stop_on(stop, usr1)
    assert not stop.is_set()
    os.kill(os.getpid(), usr1)
    assert stop.wait(5)


def test_a_storm_of_signals_while_the_main_thread_holds_the_events_lock(usr1: int) -> None:
    stop = threading.Event()
    stop_on(stop, usr1)
    for _ in range(300):
        with stop._cond:  # the main thread inside the event's lock, as in Event.set() or wait()
            os.kill(os.getpid(), usr1)  # the handler runs here, under the lock: it must not take it
    assert stop.wait(5)
