"""Process-wide memory settings for CPU model work.

glibc serves each allocation over 32 MB (a batch's activations) with a fresh
``mmap`` and returns it on ``free``, so every forward pass faults in and zeroes its
activation memory again: on 2 CPUs a resnet18 actor spent a fifth of its time in
the kernel for that (sys 2.1-2.5 s of 10 s), and embedded 35-38 instead of 44-46
images/s on one thread. Keeping freed memory in the process's heap removes it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_KEEP = 1 << 30  # bytes: allocations up to this size come from the heap


def keep_freed_memory() -> bool:
    """Makes glibc reuse freed large blocks instead of unmapping them (the process
    keeps its peak working set). Returns whether it took effect: not on other C
    libraries (macOS, musl), where this does nothing.

    Example:
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = all(mallopt(option, _KEEP) == 1
               for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))  # fmt: skip
    logger.debug(f"glibc keeps freed memory: {done}")
    return done
