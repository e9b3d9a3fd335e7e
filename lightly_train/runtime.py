"""Where the work runs: connect to a Ray cluster or start a local one, or stay in
this process; what the connected cluster is (``sizing`` sizes the pools from it).

Under ``ray job submit`` (or with ``RAY_ADDRESS`` set) ``ray.init()`` connects to that
cluster; otherwise it starts a local one. Only a Ray we started is shut down. A small
machine with no cluster to join runs the work in the calling process (``runs_here``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import ray

from lightly_train import _logging

logger = logging.getLogger(__name__)


@contextmanager
def ray_session() -> Iterator[None]:
    """Uses the running Ray, else the one at ``RAY_ADDRESS``, else a new local Ray,
    which it shuts down at the end."""
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS")
    logger.info(f"Connecting to Ray at {address}." if address else "Starting Ray.")
    _init(address)
    try:
        yield
    finally:
        ray.shutdown()


def _init(address: str | None) -> None:
    # "local" starts a new Ray: a bare ray.init() would join any Ray that `ray start`
    # left running on this machine.
    # A job-scoped local Ray needs no dashboard; for one, `ray start --head` and
    # set RAY_ADDRESS.
    # Ray starts its workers at nice 15, so on a small machine every other process
    # preempts the model's torch threads (and one late thread stalls them all).
    local = (
        {}
        if address
        else {"include_dashboard": False, "_system_config": {"worker_niceness": 0}}
    )
    # Quiet (the CLI): what workers print stays in the session's worker logs.
    quiet = _logging.quiet()
    ray.init(
        address=address or "local",
        log_to_driver=not quiet,
        logging_level=logging.ERROR if quiet else logging.WARNING,
        **local,
    )
    _logging.quiet_ray_data()


# A machine with at most this many CPUs and no GPU, and no Ray to join, embeds and
# trains in the calling process: on 2 CPUs, starting a local Ray, its helper actors
# and the model actors' processes cost more than the work (resnet18, 16 photos:
# 12.3 s on Ray, 4.1 s here; 1800: 53.2 s against 38.2 s, at steady rates of 50-52
# images/s either way), and Ray Train's controller and worker about 14 s per run
# (SimCLR, 256 photos, 2 epochs: 99 s against 73 s); benchmarks/README.md, stop 24.
# On so few cores one process whose torch threads take every core loses nothing
# to a pool of actors. Measured on 2 CPUs; 4 is a guess that a laptop of 4 behaves
# alike.
LOCAL_MAX_CPUS = 4


def machine_cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def runs_here(
    runner: Literal["auto", "ray", "local"],
    accelerator: str,
    devices: int | Literal["auto"],
) -> bool:
    """Whether ``embed`` or ``train`` runs in this process rather than on Ray.

    ``"auto"``: here when there is no Ray to use (none initialized in this
    process, no ``RAY_ADDRESS``: not under ``ray job submit``), the machine has at
    most ``LOCAL_MAX_CPUS`` CPUs and no GPU, and one model replica (or training
    worker) will do. Imports torch to look for a GPU unless ``accelerator`` says
    ``"cpu"``.

    Example:
        >>> runs_here("auto", "cpu", "auto")  # a 2-CPU laptop  # doctest: +SKIP
        True
    """
    if runner != "auto":
        return runner == "local"
    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        return False
    if accelerator == "gpu" or devices not in ("auto", 1):
        return False
    if machine_cpus() > LOCAL_MAX_CPUS:
        return False
    if accelerator == "cpu":
        return True
    import torch  # the checkpoint's thread imports it as well

    return not torch.cuda.is_available()


def only_this_machine() -> bool:
    """Whether the connected Ray cluster is this machine alone (the local Ray of
    a command, or ``ray start --head`` here): its workers run on this CPU."""
    nodes = [node for node in ray.nodes() if node["Alive"]]
    here = ray.util.get_node_ip_address()
    return len(nodes) == 1 and nodes[0]["NodeManagerAddress"] == here


def cluster_can_grow() -> bool:
    """Whether the connected Ray may gain nodes or GPUs while a job waits: not a
    Ray this process started (the command's own local Ray, or a notebook's
    ``ray.init()``), which no autoscaler grows. A connected cluster may grow."""
    try:
        from ray._private import worker

        node = worker._global_node
        return node is None or not node.is_head()
    except Exception:  # noqa: BLE001 - a private API: without it, wait as before
        return True


def this_machine() -> dict[str, float]:
    """This machine's CPUs and GPUs, as ``ray.cluster_resources()`` names them, for
    work that runs in this process; imports torch."""
    import torch

    return {"CPU": float(machine_cpus()), "GPU": float(torch.cuda.device_count())}


def node_cpus() -> list[int]:
    """CPUs of each alive node of the connected Ray cluster."""
    return [
        int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]
    ]


def ray_logs_dir() -> str | None:
    """Where this machine keeps the connected Ray session's logs (worker output,
    Ray Data's operator logs), if Ray says."""
    try:
        from ray._private import worker

        node = worker._global_node
        return node.get_logs_dir_path() if node is not None else None
    except Exception:  # noqa: BLE001 - a private API: without it only the hint goes
        return None
