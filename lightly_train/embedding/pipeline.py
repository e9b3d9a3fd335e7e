"""The ``embed`` pipeline, read top to bottom.

list + sort (driver) -> decode (CPU tasks) -> embed (actor pool) -> gather by row
index (driver, into a file of vectors) -> writer -> atomic rename to ``out``; sharded
formats instead: -> fragments per shard (tasks) -> one merge task per shard.
The stages: ``data.decode``, ``embedder`` (the actor), ``output`` (gather or
count shards, then ``writers``); ``blocks`` cuts the manifest into decode tasks.
``on_ray`` builds the Ray Data graph of these stages. On a laptop
(``runtime.runs_here``) the same stages run in this process (``local``): decode
threads -> one model -> the same gather or shard writer.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal

from lightly_train._background import in_background
from lightly_train._io import check_out_dir, check_out_file
from lightly_train._signals import interrupts_raise
from lightly_train.checkpoint import check_checkpoint_file
from lightly_train.config import validate_config
from lightly_train.data.files import list_image_files
from lightly_train.data.names import ImageFiles
from lightly_train.embedding import on_ray
from lightly_train.embedding.config import EmbedConfig
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
from lightly_train.errors import release_frames
from lightly_train.runtime import ray_logs_dir, ray_session, runs_here

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)


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
    log_start(config, len(files), state.num_done, here)
    try:
        num_images, dim, failed, logs = run_stages(
            config, loading, files, out, state, here
        )
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


def log_start(config: EmbedConfig, num_files: int, num_done: int, here: bool) -> None:
    where = " in this process" if here else ""
    if num_done:
        logger.info(
            f"Resuming: {num_done} of {num_files} images are done; embedding "
            f"the other {num_files - num_done}{where}."
        )
    else:
        logger.info(f"Embedding {num_files} images from {config.data}{where}.")


def run_stages(
    config: EmbedConfig,
    loading: Future[dict[str, Any]],
    files: ImageFiles,
    out: str,
    state: WorkState | ShardWork,
    here: bool,
) -> tuple[int, int, dict[str, str], str]:
    """The stages in this process or on Ray (started here if need be): (images,
    dim, failed, the Ray session's log directory or "")."""
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
            execute = local.execute if here else on_ray.execute
            num_images, dim, failed = execute(config, entry, files, out, state)
            return num_images, dim, failed, "" if here else ray_logs_dir() or ""
        except BaseException as ex:
            release_frames(ex)
            raise


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
