"""The ``embed`` stages on the connected Ray: manifest blocks -> decode (CPU tasks)
-> embed (a pool of model actors) -> the gather or shard writer (``output``).
``local.py`` runs the same stages in the calling process.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import ray

from lightly_train._by_value import code_travels
from lightly_train._cpu import log_bf16_hint
from lightly_train._memory import ONE_ARENA
from lightly_train.data.decode import decode_batch
from lightly_train.data.names import ImageFiles
from lightly_train.embedding.blocks import manifest, max_block_rows
from lightly_train.embedding.config import EmbedConfig, batch_size, device_jpeg
from lightly_train.embedding.output import write_output
from lightly_train.embedding.resume import ShardWork, WorkState
from lightly_train.errors import LightlyTrainError, find_cause, is_out_of_memory
from lightly_train.runtime import cluster_can_grow, node_cpus, only_this_machine
from lightly_train.sizing import Plan, plan_actors

DECODE_TASK_MEMORY = 512 * 1024**2  # bytes


def execute(
    config: EmbedConfig,
    entry: dict[str, Any],
    files: ImageFiles,
    out: str,
    state: WorkState | ShardWork,
) -> tuple[int, int, dict[str, str]]:
    """Builds and runs the dataset on the connected Ray: (images, dim, failed)."""
    todo = np.flatnonzero(~state.done) if state.num_done else None
    plan = plan_for(config, len(files) if todo is None else len(todo))
    batch = batch_size(config.batch_size, plan.accelerator, len(files), config.size)
    blocks = manifest(files, plan, batch, todo, max_block_rows(config.size))
    if not blocks:  # a resumed run that had everything but the output
        return write_output(None, files, out, config, plan, state)
    ds = decoded(blocks, config, plan)
    ds = embedded(ds, entry, config, plan, batch)
    try:
        with code_travels(config.model):  # Ray pickles the actors' arguments here
            return write_output(ds, files, out, config, plan, state)
    except Exception as ex:
        if find_cause(ex, is_out_of_memory) is not None:
            raise LightlyTrainError(
                f"The {plan.accelerator.upper()} ran out of memory embedding "
                f"batches of {batch} images of {config.size[0]}x{config.size[1]}. "
                f"Use a smaller batch_size, e.g. batch_size={max(1, batch // 2)}."
            ) from None
        raise


def plan_for(config: EmbedConfig, num_todo: int) -> Plan:
    """The actor pool for ``num_todo`` images on the connected cluster."""
    cpu_batch = batch_size("auto", "cpu", image_size=config.size)
    plan = plan_actors(
        config.accelerator,
        config.devices,
        config.num_workers,
        config.precision,
        ray.cluster_resources(),
        node_cpus(),
        # No more actors than pairs of batches: a small job waits for none.
        max_actors=max(1, math.ceil(num_todo / (2 * cpu_batch))),
        can_grow=cluster_can_grow(),
    )
    if plan.accelerator == "cpu" and only_this_machine():  # the actors' CPU
        log_bf16_hint(config.precision, "embeds")
    return plan


def decoded(blocks: list[Any], config: EmbedConfig, plan: Plan) -> ray.data.Dataset:
    """Decode tasks, one per manifest block."""
    ds = ray.data.from_blocks(blocks)  # metadata on the driver, no tasks
    return ds.map_batches(
        decode_batch,
        fn_kwargs={
            "image_size": config.size,
            "device_jpeg": device_jpeg(config, plan.accelerator),
        },
        batch_size=None,  # one manifest block per task
        num_cpus=plan.decode_cpus,
        # Room for a large photo's decode buffers and the block of arrays. As a
        # resource the actors don't ask for, it also keeps Ray Data from fusing
        # decode into the model actors: decoding stays in parallel CPU tasks.
        memory=DECODE_TASK_MEMORY,
        compute=ray.data.TaskPoolStrategy(
            size=max(1, min(plan.decode_tasks, len(blocks)))
            if plan.decode_tasks
            else None
        ),
    )


def embedded(
    ds: ray.data.Dataset,
    entry: dict[str, Any],
    config: EmbedConfig,
    plan: Plan,
    batch: int,
) -> ray.data.Dataset:
    """The model actors' pool over the decoded batches."""
    from lightly_train.embedding.embedder import Embedder  # torch: loaded by now

    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "checkpoint": ray.put(entry),
            "device": "cuda" if plan.accelerator == "gpu" else "cpu",
            "precision": config.precision,
            "num_threads": plan.threads_per_actor,
            "model": config.model,
            "compile": config.compile,
            "batch_size": batch,  # the same bits for an image in any batch
            "image_size": config.size,
        },
        batch_size=batch,
        compute=model_pool(plan),
        # A GPU actor reserves one CPU by Ray Data's default (naming both warns).
        # A CPU actor's batches run in a thread of its own: one malloc arena
        # keeps their activations' memory instead of mapping it anew per batch.
        **({"num_gpus": plan.gpus_per_actor} if plan.gpus_per_actor
           else {"num_cpus": plan.cpus_per_actor,
                 "runtime_env": {"env_vars": ONE_ARENA}}),
    )  # fmt: skip


def model_pool(plan: Plan) -> ray.data.ActorPoolStrategy:
    """A fixed pool; on GPUs several calls per actor run at once (each on its own
    CUDA stream), so one batch's host work, copies and JPEG decode overlap
    another's compute."""
    if plan.calls_per_actor <= 1:
        return ray.data.ActorPoolStrategy(size=plan.num_actors)
    return ray.data.ActorPoolStrategy(
        size=plan.num_actors,
        max_concurrent_calls_per_actor=plan.calls_per_actor,
        enable_true_multi_threading=True,
    )
