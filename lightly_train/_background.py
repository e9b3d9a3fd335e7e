"""Start slow, independent work (an import, a file load) now; take its result later.

``embed`` loads its checkpoint (and with it imports torch: 1-4 s on a laptop) in
a background thread while the driver lists the images and Ray starts, which is
mostly waiting for Ray's own processes.

Example:
    >>> loading = in_background(sum, [1, 2, 3])
    >>> loading.result()  # waits; re-raises what the call raised
    6
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def in_background(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Runs ``fn(*args)`` in a daemon thread: a process that stops early (an error,
    Ctrl-C) does not wait for it at exit, as it would for a ``ThreadPoolExecutor``'s
    thread."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as ex:  # noqa: BLE001 - handed to whoever waits
            future.set_exception(ex)

    name = f"lightly-train-{getattr(fn, '__name__', 'background')}"
    threading.Thread(target=run, name=name, daemon=True).start()
    return future
