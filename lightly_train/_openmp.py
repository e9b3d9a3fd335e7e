"""OpenMP's wait policy for processes whose torch threads share the CPUs with
decoding.

Torch's CPU thread pool on Linux is GNU OpenMP's, whose threads, done with their
part of a parallel region, spin for about 3 ms before they sleep, so that the next
region starts sooner. ``embed`` in the command's own process runs its model between
decodes in threads of the same process, and the spinning takes CPU time from the
decoders while it waits for nothing; sleeping at once (``OMP_WAIT_POLICY=PASSIVE``)
gives it back. 2 CPUs, that runner, median images/s (benchmarks/README.md, stop
25): mobilenet_v3_small at 64 px (model and decoding about equal) 1270 / 1281
spinning -> 1828 / 1880 passive; an image's mean colour at 64 px (decode-bound)
2412 -> 2507; resnet18 at 224 px (model-bound) 53.2 / 53.5 -> 53.6 / 54.2. The
model alone loses (mobilenet_v3_small, batches of 784: 7463-8153 -> 6173-7341).

GNU OpenMP reads the policy when it loads, with torch, so the CLI sets it before
any command imports torch; a local Ray that it starts inherits it. A Python
caller that imported torch keeps its own.
"""

from __future__ import annotations

import os
import sys

_POLICY = "OMP_WAIT_POLICY"


def wait_passively() -> bool:
    """Sets ``OMP_WAIT_POLICY=PASSIVE`` for the torch this process imports later,
    unless the environment names a policy. Returns False, and changes nothing,
    once torch is imported: too late.

    Example:
        >>> wait_passively()  # doctest: +SKIP
        True
    """
    if "torch" in sys.modules:
        return False
    os.environ.setdefault(_POLICY, "PASSIVE")
    return True
