"""The ``embed`` pipeline, read top to bottom.

list + sort (driver) -> decode (CPU tasks) -> embed (actor pool) -> gather by row
index (driver, into a file of vectors) -> writer -> atomic rename to ``out``; sharded
formats instead: -> fragments per shard (tasks) -> one merge task per shard.
The stages: ``data.decode``, ``embedder`` (the actor), ``output`` (gather or
count shards, then ``writers``); ``blocks`` cuts the manifest into decode tasks.
On a laptop (``runtime.runs_here``) the same stages run in this process
(``local.py``): decode threads -> one model -> the same gather or shard writer.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import ray

from lightly_train._background import in_background
from lightly_train._by_value import code_travels
from lightly_train._cpu import log_bf16_hint
from lightly_train._io import check_out_dir, check_out_file
from lightly_train._memory import ONE_ARENA
from lightly_train._signals import interrupts_raise
from lightly_train.checkpoint import check_checkpoint_file
from lightly_train.config import validate_config
from lightly_train.data.decode import decode_batch
from lightly_train.data.files import list_image_files
from lightly_train.data.names import ImageFiles
from lightly_train.embedding.blocks import manifest, max_block_rows
from lightly_train.embedding.config import EmbedConfig, batch_size, device_jpeg
from lightly_train.embedding.output import write_output
from lightly_train.embedding.report import (
    EmbedSummary,
    log_summary,
    write_failure_report,
)
from lightly_train.embedding.resume import (
    ShardWork,
    WorkState,
    keep_progress,
    work_state,
)
from lightly_train.embedding.writers import SHARDED_WRITERS
from lightly_train.errors import (
    LightlyTrainError,
    find_cause,
    is_out_of_memory,
    release_frames,
)
from lightly_train.runtime import (
    Plan,
    node_cpus,
    only_this_machine,
    plan_actors,
    ray_logs_dir,
    ray_session,
    runs_here,
)

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

DECODE_TASK_MEMORY = 512 * 1024**2  # bytes


def embed(
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] | list[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str],
    format: str = "torch",
    image_size: int | tuple[int, int] = 224,
    batch_size: int | Literal["auto"] = "auto",
    num_workers: int | Literal["auto"] = "auto",
    devices: int | Literal["auto"] = "auto",
    accelerator: Literal["auto", "cpu", "gpu"] = "auto",
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true",
    jpeg_decode: Literal["auto", "tasks", "model"] = "auto",
    compile: bool = False,
    overwrite: bool = False,
    resume_interrupted: bool = False,
    on_error: Literal["skip", "raise"] = "skip",
    shard_size: int = 100_000,
    runner: Literal["auto", "ray", "local"] = "auto",
    model: nn.Module | None = None,
) -> EmbedSummary:
    """Embeds every image under ``data`` with a trained checkpoint and writes them.

    Runs on the Ray cluster at ``RAY_ADDRESS`` (as under ``ray job submit``), on a
    local Ray, or on a laptop in this process (``runner``). Rows are in sorted
    filename order; filenames are relative to ``data``.
    Images that cannot be decoded are left out, counted in a warning and listed in
    ``<out>.failed.csv`` (``filename,error``; only the header when none failed).

    Args:
        out: Output file (a directory for ``parquet``). Written to a temp file
            beside it, then renamed.
        data: Directory with images, or a list of directories and image files.
        checkpoint: A lightly-train checkpoint, e.g. ``out/checkpoints/last.ckpt``.
        format: ``"torch"``, ``"csv"``, ``"lightly_csv"``, or ``"parquet"``: a
            directory of ``part-NNNNN.parquet`` shards written by Ray tasks, for
            datasets too large to gather in one process.
        image_size: Resize images to this size, int or (height, width).
        batch_size: Images per model forward; ``"auto"``: 64 on CPU, 512 per GPU.
        num_workers: Parallel decode tasks; ``"auto"`` uses the free CPUs.
        devices: GPUs to use (or CPU model actors when there are no GPUs).
        accelerator: ``"cpu"``, ``"gpu"`` or ``"auto"``.
        precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"`` (GPU only).
        jpeg_decode: ``"tasks"``: CPU tasks decode every image; ``"model"``: the
            model actors decode plain JPEGs on their device (nvJPEG on a GPU) and
            the tasks only read them; ``"auto"``: ``"model"`` on GPUs.
        compile: Run the model through ``torch.compile`` (slow to start).
        overwrite: Replace ``out`` if it exists (and drop an interrupted run's
            progress).
        resume_interrupted: Continue an interrupted run to the same ``out`` with
            the same arguments and data: rows it saved (in the hidden work
            directory ``.<out name>.embed-work`` beside ``out``) are not embedded
            again, and the output equals an uninterrupted run's.
        on_error: ``"skip"``: leave images that cannot be decoded out and list
            them in ``<out>.failed.csv``; ``"raise"``: the first one fails the job
            with an error naming it, and nothing is written.
        shard_size: ``parquet`` only: rows per shard file.
        runner: ``"ray"``: on the Ray cluster at ``RAY_ADDRESS`` or on a local
            Ray started for the job; ``"local"``: the same stages in this process
            (decode threads, one model); ``"auto"``: ``"local"`` when no Ray is
            initialized, ``RAY_ADDRESS`` is unset, the machine has at most 4 CPUs
            and no GPU, and ``devices`` asks for one replica at most (a laptop,
            where starting Ray costs more than it gives), else ``"ray"``.
        model: Only for checkpoints trained from a custom backbone module: a fresh
            instance of that module.

    Returns:
        A summary with the output path, number of images, dimension and failures.

    Example:
        >>> import lightly_train
        >>> lightly_train.embed(
        ...     out="embeddings.pth",
        ...     data="my_data_dir",
        ...     checkpoint="out/my_experiment/checkpoints/last.ckpt",
        ...     format="torch",
        ... )  # doctest: +SKIP
    """
    return run(validate_config(EmbedConfig, dict(locals())))


def run(config: EmbedConfig) -> EmbedSummary:
    """Runs ``embed`` for a validated config."""
    start = time.perf_counter()
    sharded = SHARDED_WRITERS.get(config.format)
    out = (
        check_out_dir(config.out, config.overwrite, sharded.pattern)
        if sharded
        else check_out_file(config.out, config.overwrite, "embeddings.pth")
    )
    # The checkpoint loads in a thread while the images are listed and Ray
    # starts: with it torch is imported, 1-4 s on a laptop that the driver
    # otherwise spends before Ray's start (16 photos end to end: benchmarks/
    # README.md). A bad checkpoint's error arrives after Ray's start-up; a
    # missing one's (and every other argument's) before.
    check_checkpoint_file(config.checkpoint)
    loading = in_background(load_entry, config)
    files = list_image_files(config.data)
    state = work_state(config, files, out)
    here = runs_here(config.runner, config.accelerator, config.devices)
    where = " in this process" if here else ""
    if state.num_done:
        logger.info(
            f"Resuming: {state.num_done} of {len(files)} images are done; embedding "
            f"the other {len(files) - state.num_done}{where}."
        )
    else:
        logger.info(f"Embedding {len(files)} images from {config.data}{where}.")
    try:
        # After ray.init, which sets its own SIGTERM handler (sys.exit) on drivers.
        with contextlib.nullcontext() if here else ray_session(), interrupts_raise():
            # A failed embed's model actors live as long as its executor, which
            # the error's traceback holds and which sits in reference cycles:
            # until the error is gone and a garbage collection has run they hold
            # their CPUs, and the next embed in this Ray session (a retry with a
            # smaller batch_size in a notebook) would wait for them forever.
            gc.collect()
            try:
                entry = loading.result()
                if here:
                    from lightly_train.embedding import local  # torch: loaded by now
                run_stages = local.execute if here else execute
                num_images, dim, failed = run_stages(config, entry, files, out, state)
                logs = "" if here else ray_logs_dir() or ""
            except BaseException as ex:
                release_frames(ex)
                raise
    except BaseException:
        keep_progress(state)  # also when Ray did not start: no empty work dir
        raise
    report = write_failure_report(out, failed)
    state.remove()
    summary = EmbedSummary(
        out, num_images, dim, failed, time.perf_counter() - start, report, logs
    )
    log_summary(summary)
    return summary


def load_entry(config: EmbedConfig) -> dict[str, Any]:
    """The checkpoint's entry, checked against the arguments on the driver, not
    in an actor; imports torch."""
    from lightly_train.checkpoint import (
        check_custom_model,
        check_image_size,
        load_checkpoint_entry,
    )

    entry = load_checkpoint_entry(config.checkpoint)
    check_custom_model(entry, config.model)
    check_image_size(entry, config.size)
    return entry


def execute(
    config: EmbedConfig,
    entry: dict[str, Any],
    files: ImageFiles,
    out: str,
    state: WorkState | ShardWork,
) -> tuple[int, int, dict[str, str]]:
    """Builds and runs the dataset on the connected Ray: (images, dim, failed)."""
    from lightly_train.embedding.embedder import Embedder  # torch: loaded by now

    todo = np.flatnonzero(~state.done) if state.num_done else None
    num_todo = len(files) if todo is None else len(todo)
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
    )
    if plan.accelerator == "cpu" and only_this_machine():  # the actors' CPU
        log_bf16_hint(config.precision, "embeds")
    batch = batch_size(config.batch_size, plan.accelerator, len(files), config.size)
    on_device = device_jpeg(config, plan.accelerator)
    blocks = manifest(files, plan, batch, todo, max_block_rows(config.size))
    if not blocks:  # a resumed run that had everything but the output
        return write_output(None, files, out, config, plan, state)
    ds = ray.data.from_blocks(blocks)  # metadata on the driver, no tasks
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"image_size": config.size, "device_jpeg": on_device},
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
    ds = ds.map_batches(
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
