"""Where the work runs: connect to a Ray cluster or start a local one, and size pools.

Under ``ray job submit`` (or with ``RAY_ADDRESS`` set) ``ray.init()`` connects to that
cluster; otherwise it starts a local one. Only a Ray we started is shut down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import ray

from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)


@contextmanager
def ray_session() -> Iterator[None]:
    """Uses the running Ray, else the one at ``RAY_ADDRESS``, else a new local Ray."""
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS")
    logger.info(f"Connecting to Ray at {address}." if address else "Starting Ray.")
    # "local" starts a new Ray: a bare ray.init() would join any Ray that `ray start`
    # left running on this machine.
    # A job-scoped local Ray needs no dashboard; for one, `ray start --head` and
    # set RAY_ADDRESS.
    local = {} if address else {"include_dashboard": False}
    ray.init(
        address=address or "local",
        log_to_driver=True,
        logging_level=logging.WARNING,
        **local,
    )
    try:
        yield
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Plan:
    """How many model actors run where, and what each one holds."""

    accelerator: Literal["cpu", "gpu"]
    num_actors: int
    cpus_per_actor: int
    gpus_per_actor: int
    decode_tasks: int | None  # None: as many as free CPUs allow


def resolve_accelerator(
    accelerator: str,
    devices: int | Literal["auto"],
    precision: str,
    cluster: dict[str, float],
) -> Literal["cpu", "gpu"]:
    """``auto`` is ``gpu`` when the cluster has GPUs; checks what the choice allows.

    ``accelerator='gpu'`` with a number of ``devices`` on a cluster without GPUs
    waits for an autoscaler to add them; with ``devices='auto'`` it is an error.
    """
    gpus = int(cluster.get("GPU", 0))
    if accelerator == "auto":
        accelerator = "gpu" if gpus > 0 else "cpu"
    if accelerator == "gpu" and gpus == 0:
        if devices == "auto":
            raise LightlyTrainError(
                "accelerator='gpu' but the Ray cluster has no GPUs. Use "
                "accelerator='cpu' or 'auto', add GPU nodes, or on an autoscaling "
                "cluster give the number of GPUs to wait for with devices=N."
            )
        logger.warning(
            f"The Ray cluster has no GPUs yet; waiting for {devices} to be added."
        )
    if precision == "16-mixed" and accelerator != "gpu":
        raise LightlyTrainError(
            "precision='16-mixed' needs a GPU. On CPU use '32-true' or 'bf16-mixed'."
        )
    return "gpu" if accelerator == "gpu" else "cpu"


def node_cpus() -> list[int]:
    """CPUs of each alive node of the connected Ray cluster."""
    return [
        int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]
    ]


def plan_actors(
    accelerator: str,
    devices: int | Literal["auto"],
    num_workers: int | Literal["auto"],
    precision: str,
    cluster: dict[str, float],
    nodes: Sequence[int] = (),
) -> Plan:
    """Sizes the model actor pool from the cluster's resources.

    On GPUs: one actor per GPU (``devices`` of them). On CPUs: ``devices`` actors, by
    default a quarter of the CPUs, using half the CPUs between them, so the decode
    tasks always have CPUs left and the pipeline cannot deadlock on a small machine.
    ``nodes`` (CPUs per node) caps an actor so it fits on one node with a CPU spare.
    """
    cpus, gpus = int(cluster.get("CPU", 0)), int(cluster.get("GPU", 0))
    decode = None if num_workers == "auto" else num_workers
    if resolve_accelerator(accelerator, devices, precision, cluster) == "gpu":
        actors = gpus if devices == "auto" else devices
        if actors > gpus:
            logger.warning(
                f"devices={actors} but the cluster has {gpus} GPUs now; "
                "waiting for the autoscaler to add more."
            )
        return Plan("gpu", actors, 1, 1, decode)
    if cpus < 2:
        raise LightlyTrainError(
            f"The Ray cluster has {cpus} CPU(s); embedding on CPU needs at least 2: "
            "one for the model and one for decoding images."
        )
    actors = max(1, cpus // 4) if devices == "auto" else devices
    if actors >= cpus:
        raise LightlyTrainError(
            f"devices={actors} CPU model actors need {actors} CPUs but the cluster "
            f"has {cpus}, and at least one must stay free for decoding images. "
            f"Use devices={cpus - 1} or fewer, or devices='auto'."
        )
    per_actor = max(1, (cpus // 2) // actors)
    if nodes:
        per_actor = max(1, min(per_actor, max(nodes) - 1))
    return Plan("cpu", actors, per_actor, 0, decode)
