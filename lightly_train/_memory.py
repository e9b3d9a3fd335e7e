"""Process-wide memory settings for CPU model work.

glibc serves each allocation over 32 MB (a batch's activations) with a fresh
``mmap`` and returns it on ``free``, so every forward pass faults in and zeroes its
activation memory again: on 2 CPUs a resnet18 actor spent a fifth of its time in
the kernel for that (sys 2.1-2.5 s of 10 s), and embedded 35-38 instead of 44-46
images/s on one thread. Keeping freed memory in the process's heap removes it.

That setting governs glibc's main heap only. A thread other than the main one
allocates from an arena of heaps of at most 64 MB, where a larger block is mapped
whatever the threshold says; Ray runs an actor's tasks, and Ray Train its training
loop, in such a thread. ``ONE_ARENA`` (read by glibc when a process starts, so it
goes into the environment of the processes Ray starts for the work) puts every
thread on the main heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP = 1 << 30  # bytes: allocations up to this size come from the heap
_DEFAULT = 128 * 1024  # glibc's initial thresholds

# For a process's environment (a Ray runtime_env's env_vars): one malloc arena.
# resnet50 forward in a non-main thread, 1 torch thread: 37,900 page faults/s and
# 7% of its time in the kernel without it, none with it (benchmarks/README.md).
ONE_ARENA = {"MALLOC_ARENA_MAX": "1"}


def keep_freed_memory() -> bool:
    """Makes glibc reuse freed large blocks instead of unmapping them (the process
    keeps its peak working set). Returns whether it took effect: not on other C
    libraries (macOS, musl), where this does nothing.

    Example:
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    done = all(mallopt(option, _KEEP) == 1
               for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))  # fmt: skip
    logger.debug(f"glibc keeps freed memory: {done}")
    return done


def give_back_freed_memory() -> None:
    """Undoes ``keep_freed_memory`` in a process that goes on with other work (an
    ``embed`` that ran in the caller's process): glibc's initial thresholds, and
    the freed heap returned to the system."""
    libc = _glibc()
    if libc is None:
        return
    for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD):
        libc.mallopt(option, _DEFAULT)
    libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """The C library, if it is glibc (has ``mallopt`` and ``malloc_trim``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - AttributeError elsewhere
    except (OSError, AttributeError):
        return None
    return libc
