"""Errors that are the user's to fix.

The CLI prints these without a traceback and exits with status 2; the Python API raises
them. Every message names what was wrong and what would be valid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import FrameType


class LightlyTrainError(ValueError):
    """A user error: bad arguments, missing files, an output that already exists."""


def related_errors(ex: BaseException) -> Iterator[BaseException]:
    """``ex`` and, once each, every error it chains to or holds: causes, contexts,
    exception groups, Ray Train's worker failures and the remote errors that Ray's
    errors keep as attributes."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [ex]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        stack += [err.__cause__, err.__context__, *getattr(err, "exceptions", [])]
        stack += list(getattr(err, "worker_failures", {}).values())
        stack += [v for v in vars(err).values() if isinstance(v, BaseException)]


def find_cause(
    ex: BaseException, match: Callable[[BaseException], bool]
) -> BaseException | None:
    """The first of ``related_errors(ex)`` for which ``match`` is true.

    Ray wraps what an actor or worker raised in its own errors; this finds it.
    """
    return next((err for err in related_errors(ex) if match(err)), None)


def is_out_of_memory(err: BaseException) -> bool:
    """A device (CUDA) out-of-memory error, also as text in a remote traceback."""
    return type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(err)


def release_frames(ex: BaseException) -> None:
    """Clears the local variables of the finished frames that ``ex`` reaches: those
    of its traceback and their callers, for it and for every error it chains to or
    holds, so that the error keeps no dataset, executor or actor alive.

    An error from Ray Data's executor thread reaches that thread's frames.
    """
    for err in related_errors(ex):
        tb = err.__traceback__
        while tb is not None:
            frame: FrameType | None = tb.tb_frame
            while frame is not None:
                with contextlib.suppress(RuntimeError):  # still running
                    frame.clear()
                frame = frame.f_back
            tb = tb.tb_next
