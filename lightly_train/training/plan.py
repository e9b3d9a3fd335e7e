"""How many training workers run, on what, with how many CPUs and loader processes,
and what each is told (``WorkerSpec``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import ray

from lightly_train.data import storage
from lightly_train.data.names import ImageFiles
from lightly_train.errors import LightlyTrainError
from lightly_train.runtime import cluster_can_grow, node_cpus, this_machine
from lightly_train.sizing import check_gpu_count, resolve_accelerator
from lightly_train.training.config import TrainConfig

if TYPE_CHECKING:
    from lightly_train.training.worker import WorkerSpec

# A CPU worker's loader processes when num_workers="auto": one per 4 of its CPUs.
# On 2 CPUs that is none: loading in the training process with 2 torch threads
# beat 1 thread + 1 loader process (213 vs 154 images/s, resnet18 at 32 px).
CPU_LOADER_SHARE = 4


@dataclass(frozen=True)
class WorkerPlan:
    accelerator: Literal["cpu", "gpu"]
    num_workers: int  # Ray Train workers = devices x num_nodes
    cpus_per_worker: int
    loader_workers: int  # DataLoader processes per worker
    torch_threads: int  # of the training process: its CPUs not used by loaders


def plan_workers(
    accelerator: str,
    devices: int | Literal["auto"],
    num_nodes: int,
    num_workers: int | Literal["auto"],
    precision: str,
    cluster: dict[str, float],
    nodes: Sequence[int] = (),
    can_grow: bool = True,
) -> WorkerPlan:
    """One worker per GPU; on CPUs ``devices`` workers (default 1) per node.

    A CPU worker reserves an equal share of its node's CPUs (``nodes``: CPUs per
    alive node; empty means one node with all the cluster's CPUs); its loader
    processes (by default one per ``CPU_LOADER_SHARE`` CPUs) and its torch threads
    split that share. A GPU worker reserves its node's CPUs divided by its GPUs
    and, by default, runs one loader process per reserved CPU but one (the
    training process keeps one CPU for itself).
    """
    cpus, gpus = int(cluster.get("CPU", 0)), int(cluster.get("GPU", 0))
    if resolve_accelerator(accelerator, devices, precision, cluster, can_grow) == "gpu":
        per_node = max(1, gpus // num_nodes) if devices == "auto" else devices
        check_gpu_count(per_node * num_nodes, gpus, can_grow)
        node = min(sorted(nodes, reverse=True)[:num_nodes]) if nodes else cpus
        gpus_per_node = max(1, gpus // max(1, len(nodes)))
        share = max(1, node // gpus_per_node)  # its node's CPUs / GPUs
        loaders = max(1, share - 1) if num_workers == "auto" else num_workers
        threads = max(1, share - loaders)
        return WorkerPlan("gpu", per_node * num_nodes, share, loaders, threads)
    per_node = 1 if devices == "auto" else devices
    workers = per_node * num_nodes
    if workers > cpus:
        raise LightlyTrainError(
            f"{workers} CPU training workers need {workers} CPUs but the Ray cluster "
            f"has {cpus}. Use devices={max(1, cpus // num_nodes)} or fewer."
        )
    per_worker = max(1, cpus // workers)
    if nodes:  # every one of the num_nodes largest nodes must hold per_node workers
        smallest = min(sorted(nodes, reverse=True)[:num_nodes])
        if smallest < per_node:
            raise LightlyTrainError(
                f"devices={per_node} CPU workers per node need {per_node} CPUs on "
                f"each of {num_nodes} node(s), but a node has only {smallest}."
            )
        per_worker = min(per_worker, smallest // per_node)
    loaders = per_worker // CPU_LOADER_SHARE if num_workers == "auto" else num_workers
    threads = max(1, per_worker - loaders)
    return WorkerPlan("cpu", workers, per_worker, loaders, threads)


def plan_spec(
    config: TrainConfig, files: ImageFiles, out: Path, here: bool
) -> tuple[WorkerPlan, WorkerSpec]:
    """The workers for this cluster (or this process) and what each is told."""
    from lightly_train.training.worker import WorkerSpec

    cluster, nodes = (
        (this_machine(), []) if here else (ray.cluster_resources(), node_cpus())
    )
    plan = plan_workers(
        config.accelerator, config.devices, config.num_nodes, config.num_workers,
        config.precision, cluster, nodes, can_grow=not here and cluster_can_grow(),
    )  # fmt: skip
    if here and plan.num_workers > 1:
        raise LightlyTrainError(
            f"runner='local' trains one worker in this process, but "
            f"devices={config.devices} asks for {plan.num_workers}. Use "
            "devices=1, or runner='ray' (real DDP across Ray Train workers)."
        )
    return plan, WorkerSpec(
        config={**config.model_dump(), "out": str(out)},
        paths=[storage.canonical(p) for p in files.paths],
        accelerator=plan.accelerator,
        worker_batch_size=worker_batch_size(config.batch_size, plan),
        loader_workers=plan.loader_workers,
        torch_threads=plan.torch_threads,
        steps_per_epoch=steps_per_epoch(len(files), config.batch_size, plan),
        resume_from=None,
    )


def worker_batch_size(batch_size: int, plan: WorkerPlan) -> int:
    if batch_size % plan.num_workers:
        raise LightlyTrainError(
            f"batch_size={batch_size} cannot be split evenly over {plan.num_workers} "
            f"workers. Use a multiple of {plan.num_workers}."
        )
    return batch_size // plan.num_workers


def steps_per_epoch(num_images: int, batch_size: int, plan: WorkerPlan) -> int:
    # DistributedSampler pads each shard to ceil(N / workers); loaders drop_last.
    shard = math.ceil(num_images / plan.num_workers)
    steps = shard // (batch_size // plan.num_workers)
    if steps == 0:
        raise LightlyTrainError(
            f"batch_size={batch_size} is larger than the {num_images} images in "
            f"data. Use batch_size={num_images} or less."
        )
    return steps
