"""Stopping a process on a signal, safely.

A handler that calls ``threading.Event.set()`` takes the event's lock inside the signal handler. When the signal
lands while the main thread holds that lock (inside that very ``set()``, or a ``wait()``), the handler blocks on a lock
its own thread holds; every further signal interrupts the blocked acquire and runs the handler again, one frame
deeper, until ``RecursionError`` (seen when a stopping engine stage got SIGTERM every 0.2 s). Here the handler only
writes a byte to a pipe, which takes no lock; a daemon thread reading the pipe sets the event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType


def stop_on(stop: threading.Event, *signums: int) -> None:
    """Set ``stop`` when any of ``signums`` arrives (default SIGTERM and SIGINT); call from the main thread."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def handler(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):  # full: a byte is waiting already, the event is as good as set
            os.write(write_fd, b"\0")

    def watch() -> None:
        os.read(read_fd, 1)
        stop.set()

    threading.Thread(target=watch, name="stop-on-signal", daemon=True).start()
    for signum in signums or (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


__all__ = ["stop_on"]
