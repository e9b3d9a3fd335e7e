"""How big the pools are: the model actors and decode tasks of ``embed``, sized
from a Ray cluster's resources (``plan_actors``), and which accelerator a job gets.

Pure functions of the resources they are given: ``runtime`` says what the cluster
has; ``embedding.on_ray`` builds the pipeline from the ``Plan``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)


# Torch threads of one CPU model actor, at most. Threads of one process wait for
# each other in every layer, so any other process that takes a core for a moment
# (decode tasks, Ray's own) stalls them all. On 2 CPUs, 2 actors x 1 thread and
# 1 x 2 are within each other's spread (resnet18: 49.9 vs 51.7 images/s, 2 x 1 the
# steadier; resnet50: 25.3 vs 22.6); benchmarks/cpu_sizing.py. Big nodes run
# 4-thread actors, a quarter as many actors as CPUs: not measured on 16 cores yet.
CPU_THREADS_PER_ACTOR = 4
# Ray CPUs per node that CPU model actors leave to decode tasks: decoding a photo
# costs a few percent of a forward on CPU, so a small share; the actors' torch
# threads still cover every CPU (the OS shares the rest).
DECODE_SHARE = 0.25
# Model actors per GPU, and batches in flight in each (threads, each with its own
# CUDA stream): one batch's host work, copies and JPEG decode overlap another's
# forward. Measured on an H200 (benchmarks/README.md), resnet50: at batch 256, 2
# actors per GPU (torchvision decodes JPEGs under one lock per process) made 7,524
# images/s against 6,739 for one, but one actor at batch 512 made 8,205 (2 actors
# at 512 not measured); 4 in flight in one actor did worse than 2.
GPU_ACTORS_PER_DEVICE = 1
GPU_CALLS_PER_ACTOR = 2


@dataclass(frozen=True)
class Plan:
    """How many model actors run where, what each one holds, and how decode tasks
    are sized. ``cpus_*`` are Ray reservations; ``threads_per_actor`` is what the
    actor's torch uses (on CPU, all CPUs of its node's share, not only those it
    reserves)."""

    accelerator: Literal["cpu", "gpu"]
    num_actors: int
    cpus_per_actor: float
    threads_per_actor: int
    gpus_per_actor: float
    decode_tasks: int | None  # at most this many at once; None: as free CPUs allow
    decode_cpus: float  # what one decode task reserves
    calls_per_actor: int = 1  # batches one actor works on at once


def resolve_accelerator(
    accelerator: str,
    devices: int | Literal["auto"],
    precision: str,
    cluster: dict[str, float],
    can_grow: bool = True,
) -> Literal["cpu", "gpu"]:
    """``auto`` is ``gpu`` when the cluster has GPUs; checks what the choice allows.

    ``accelerator='gpu'`` with a number of ``devices`` on a cluster without GPUs
    waits for an autoscaler to add them; with ``devices='auto'``, or on a Ray that
    cannot grow (``cluster_can_grow``), it is an error.
    """
    gpus = int(cluster.get("GPU", 0))
    if accelerator == "auto":
        accelerator = "gpu" if gpus > 0 else "cpu"
    if accelerator == "gpu" and gpus == 0:
        if not can_grow:
            raise LightlyTrainError(
                "accelerator='gpu' but the local Ray started on this machine has no "
                "GPUs, and none can be added to it. Use accelerator='cpu' or 'auto', "
                "or connect to a cluster with GPUs (RAY_ADDRESS)."
            )
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


def check_gpu_count(devices: int, gpus: int, can_grow: bool) -> None:
    """More GPUs asked for than the cluster has: an error on a Ray that cannot
    grow, else a warning while the job waits for an autoscaler to add them."""
    if devices <= gpus:
        return
    if not can_grow:
        raise LightlyTrainError(
            f"The job asks for {devices} GPUs but the local Ray started on this "
            f"machine has {gpus}, and none can be added to it. Use devices={gpus} "
            "or devices='auto'."
        )
    logger.warning(
        f"devices={devices} but the cluster has {gpus} GPUs now; "
        "waiting for the autoscaler to add more."
    )


def plan_actors(
    accelerator: str,
    devices: int | Literal["auto"],
    num_workers: int | Literal["auto"],
    precision: str,
    cluster: dict[str, float],
    nodes: Sequence[int] = (),
    max_actors: int | None = None,
    can_grow: bool = True,
) -> Plan:
    """Sizes the model actor pool and the decode tasks from the cluster's resources.

    On GPUs: ``GPU_ACTORS_PER_DEVICE`` actors per GPU (``devices`` GPUs), each
    reserving one CPU for its host work and running ``GPU_CALLS_PER_ACTOR`` batches
    at once; decode tasks take whole CPUs, since there decoding is the work.

    On CPUs: actors of ``CPUs // 4`` torch threads, 1 to ``CPU_THREADS_PER_ACTOR``,
    that together cover every CPU of a node (2 CPUs: 2 actors x 1 thread; 8: 4 x
    2; 16: 4 x 4; 64: 16 x 4), but no more actors than ``max_actors``.
    They reserve all but ``DECODE_SHARE`` of a node's CPUs, which decode tasks share
    in slices of ``DECODE_SHARE / CPUs``, so up to one decode task per CPU runs when
    decoding is the bottleneck, and the pipeline cannot deadlock on 2 CPUs.
    Before the actors hold their CPUs, the slices would let 8 decode tasks per CPU
    start, each in a new worker process; ``decode_tasks`` caps them at one per
    CPU (unless ``num_workers`` says otherwise).
    ``nodes`` (CPUs per node, default: one node holding all) bounds an actor to
    what one node has. ``max_actors`` (from the size of the data) keeps a small
    job from waiting for actors it has no batches for. ``can_grow``: whether
    missing GPUs may yet be added (``cluster_can_grow``).
    """
    cpus, gpus = int(cluster.get("CPU", 0)), int(cluster.get("GPU", 0))
    decode = None if num_workers == "auto" else num_workers
    node = max(nodes) if nodes else cpus
    if resolve_accelerator(accelerator, devices, precision, cluster, can_grow) == "gpu":
        used = max(1, min(gpus, max_actors or gpus)) if devices == "auto" else devices
        check_gpu_count(used, gpus, can_grow)
        gpus_per_node = max(1, gpus // max(1, len(nodes)))
        per_gpu = GPU_ACTORS_PER_DEVICE
        threads = max(1, min(CPU_THREADS_PER_ACTOR, node // (gpus_per_node * per_gpu)))
        return Plan(
            "gpu",
            used * per_gpu,
            cpus_per_actor=1,  # Ray Data reserves it for a GPU actor by default
            threads_per_actor=threads,
            gpus_per_actor=1 / per_gpu,
            decode_tasks=decode,
            decode_cpus=1,
            calls_per_actor=GPU_CALLS_PER_ACTOR,
        )
    if cpus < 2:
        raise LightlyTrainError(
            f"The Ray cluster has {cpus} CPU(s); embedding on CPU needs at least 2: "
            "one for the model and one for decoding images."
        )
    threads = max(1, min(CPU_THREADS_PER_ACTOR, node // 4))
    auto = max(1, min(cpus // threads, max_actors or cpus))
    actors = auto if devices == "auto" else devices
    if actors > cpus:
        raise LightlyTrainError(
            f"devices={actors} CPU model actors need a CPU each but the cluster "
            f"has {cpus}. Use devices={cpus} or fewer, or devices='auto'."
        )
    per_node = max(1, min(node, -(-actors // max(1, cpus // node))))  # share a node
    for_decode = DECODE_SHARE * max(1, node // 8)  # 2 CPUs: 0.25, 64 CPUs: 2
    return Plan(
        "cpu",
        actors,
        cpus_per_actor=round((node - for_decode) / per_node, 4),
        threads_per_actor=max(1, node // per_node),
        gpus_per_actor=0,
        decode_tasks=cpus if decode is None else decode,
        decode_cpus=round(for_decode / node, 4),
    )
