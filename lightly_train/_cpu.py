"""Whether this machine's CPU computes bf16 in hardware (Intel AMX, AVX-512 BF16):
there torch's bf16 autocast (``precision="bf16-mixed"``) runs convolutions about
twice as fast as float32, so a command that runs here on CPU in float32 says so.

2 cores of an AMD EPYC with ``avx512_bf16`` (benchmarks/README.md, stop 27),
float32 -> bf16-mixed: resnet18 @224 forward, batches of 64, 50 -> 99 images/s;
resnet50 17 -> 33; ``embed`` in the command's process (resnet18) 55 -> 98;
``train`` (SimCLR resnet18, batches of 32) 8.0 -> 13.5. Embeddings stay within 0.4%
of float32's (relative norm of the difference; cosine >= 0.99999).
"""

from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names


def bf16_flag(cpuinfo: str) -> str:
    """The first of ``BF16_FLAGS`` in the ``flags`` of ``/proc/cpuinfo`` text, or
    ``""``.

    Example:
        >>> bf16_flag("flags\\t\\t: fpu sse avx512f avx512_bf16\\n")
        'avx512_bf16'
    """
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return next((flag for flag in BF16_FLAGS if flag in flags), "")
    return ""


@functools.cache
def native_bf16() -> str:
    """This CPU's flag for bf16 in hardware, or ``""`` (none; or not Linux, where
    nothing is claimed)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return bf16_flag(cpuinfo.read())
    except OSError:
        return ""


def bf16_hint(precision: str, doing: str) -> str:
    """A line for the log of a command that ``doing`` ("embeds", "trains") on
    this machine's CPU in ``precision``: how to run about twice as fast, when it
    is float32 and the CPU computes bf16 in hardware; else ``""``."""
    flag = native_bf16()
    if precision != "32-true" or not flag:
        return ""
    return (
        f"This CPU computes bf16 in hardware ({flag}): with precision=bf16-mixed "
        f"it {doing} about twice as fast (results within about 0.5% of float32's)."
    )


def log_bf16_hint(precision: str, doing: str) -> None:
    """Logs ``bf16_hint``, if there is one: for work on this machine's CPU."""
    if hint := bf16_hint(precision, doing):
        logger.info(hint)
