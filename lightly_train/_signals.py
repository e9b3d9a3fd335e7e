"""SIGTERM handled as Ctrl-C, so that a stopped job cleans up as an interrupted one;
and an interrupt that a library swallowed still stops the run."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# The signal that arrived in the innermost ``interrupts_raise`` block, if any.
_received: str | None = None


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM (``ray job stop``, ``kill``, a
    scheduler's time limit) raise ``KeyboardInterrupt``: ``finally`` blocks and
    handlers run, temp files go, and progress is saved. The signal is also
    remembered for ``raise_if_interrupted``. Only the main thread can receive
    signals; elsewhere this does nothing.

    Example:
        >>> with interrupts_raise():
        ...     for batch in batches:  # doctest: +SKIP
        ...         raise_if_interrupted()
    """
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        global _received
        _received = signal.Signals(signum).name
        raise KeyboardInterrupt(f"signal {_received}")

    outer = _received
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received = outer


def raise_if_interrupted() -> None:
    """Raises ``KeyboardInterrupt`` if a signal arrived in the ``interrupts_raise``
    block. Code that runs in the main thread between a loop's steps (Ray's, a
    finaliser's) can catch the first one, or run it where exceptions are ignored
    (CI once saw a Ctrl-C during ``embed`` change nothing); a loop that calls this
    each step stops all the same."""
    if _received is not None:
        raise KeyboardInterrupt(f"signal {_received}")
