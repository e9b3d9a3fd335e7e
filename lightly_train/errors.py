"""Errors that are the user's to fix.

The CLI prints these without a traceback and exits with status 2; the Python API raises
them. Every message names what was wrong and what would be valid.
"""

from __future__ import annotations

from collections.abc import Callable


class LightlyTrainError(ValueError):
    """A user error: bad arguments, missing files, an output that already exists."""


def find_cause(
    ex: BaseException, match: Callable[[BaseException], bool]
) -> BaseException | None:
    """The first error in ``ex``'s causes, contexts, exception groups and Ray
    Train's worker failures (``ex`` included) for which ``match`` is true.

    Ray wraps what an actor or worker raised in its own errors; this finds it.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [ex]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if match(err):
            return err
        stack += [err.__cause__, err.__context__, *getattr(err, "exceptions", [])]
        stack += list(getattr(err, "worker_failures", {}).values())
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """A device (CUDA) out-of-memory error, also as text in a remote traceback."""
    return type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(err)
