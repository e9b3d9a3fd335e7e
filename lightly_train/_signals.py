"""SIGTERM handled as Ctrl-C, so that a stopped job cleans up as an interrupted one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGTERM (``ray job stop``, ``kill``, a scheduler's time
    limit) raises ``KeyboardInterrupt`` as SIGINT does: ``finally`` blocks and
    handlers run, temp files go, and progress is saved. Only the main thread can
    receive signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
