"""The ``embed`` pipeline, read top to bottom.

list + sort (driver) -> decode (CPU tasks) -> embed (actor pool) -> gather by row
index (driver, into a file of vectors) -> writer -> atomic rename to ``out``; sharded
formats instead: -> fragments per shard (tasks) -> one merge task per shard.
On a laptop (``runtime.runs_here``) the same stages run in this process
(``local.py``): decode threads -> one model -> the same gather or shard writer.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from lightly_train._background import in_background
from lightly_train._io import check_out_dir, check_out_file
from lightly_train._memory import ONE_ARENA
from lightly_train._progress import Progress
from lightly_train._signals import interrupts_raise, raise_if_interrupted
from lightly_train.checkpoint import check_checkpoint_file
from lightly_train.config import validate_config
from lightly_train.data import storage
from lightly_train.data.decode import decode_batch
from lightly_train.data.files import ImageFiles, list_image_files
from lightly_train.data.publish import output_location
from lightly_train.embedding.config import EmbedConfig
from lightly_train.embedding.failures import (
    check_some_decoded,
    raise_failure,
    write_failure_report,
)
from lightly_train.embedding.resume import (
    ShardWork,
    WorkState,
    keep_progress,
    work_state,
)
from lightly_train.embedding.writers import (
    SHARDED_WRITERS,
    WRITERS,
    Embeddings,
)
from lightly_train.errors import (
    LightlyTrainError,
    find_cause,
    is_out_of_memory,
    release_frames,
)
from lightly_train.runtime import (
    Plan,
    node_cpus,
    plan_actors,
    ray_logs_dir,
    ray_session,
    runs_here,
)

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

DECODE_TASK_MEMORY = 512 * 1024**2  # bytes
AUTO_CPU_BATCH, AUTO_GPU_BATCH = 64, 512
SHOWN_FAILURES = 10  # failures the log names; <out>.failed.csv has all
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 16, 256  # manifest rows per decode task
# Decoded pixels per block, at most: 256 images at 224x224. Smaller images make
# longer blocks, up to 2048 rows: Ray Data keeps some state per block on the
# driver (its stats), and each task costs a few milliseconds of its time; but
# the driver also holds a few blocks of embeddings at once when it gathers them
# (8192 rows of 576 floats: 19 MB each).
MAX_BLOCK_BYTES, MOST_BLOCK_ROWS = MAX_BLOCK_ROWS * 224 * 224 * 3, 2048


@dataclass(frozen=True)
class EmbedSummary:
    """What an ``embed`` run wrote."""

    out: str  # a path or URI, as given
    num_images: int
    dim: int
    failed: dict[str, str]  # filename -> why it could not be decoded
    seconds: float
    failed_report: str = ""  # <out>.failed.csv: path or URI
    ray_logs: str = ""  # this machine's directory of the Ray session's logs


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
        return write_output(ds, files, out, config, plan, state)
    except Exception as ex:
        if find_cause(ex, is_out_of_memory) is not None:
            raise LightlyTrainError(
                f"The {plan.accelerator.upper()} ran out of memory embedding "
                f"batches of {batch} images of {config.size[0]}x{config.size[1]}. "
                f"Use a smaller batch_size, e.g. batch_size={max(1, batch // 2)}."
            ) from None
        raise


def batch_size(
    requested: int | Literal["auto"],
    accelerator: str,
    num_files: int | None = None,
    image_size: tuple[int, int] = (224, 224),
) -> int:
    """``auto``: at 224x224, up to 64 on CPU (faster than 128 there,
    benchmarks/README.md), up to 512 per GPU: each batch costs Ray and the actor a
    fixed few milliseconds, and on an H200 a ResNet-50 at 224 px embedded 8,200
    images/s in batches of 512 against 6,700 in batches of 256 (benchmarks/README.md);
    its activations take a few GB. On CPU, other sizes get as many pixels per batch
    (at most 1024 images): the same activation memory, and for small images the
    fixed costs spread over more of them (mobilenet_v3_small at 64 px, one thread:
    1.12 ms per image in batches of 64, 0.72 in 256, 0.67 in 1024). Not on GPUs:
    there JPEGs decode at full size in the batch's memory before the resize.
    A job of fewer files gets batches that split it evenly, in multiples of 8:
    every batch is padded to this size (the same bits for an image in any batch),
    so 16 images in batches of 64 would pay for 64 forwards. It depends on the
    number of files and the image size only, so a resumed run (whose image size
    its fingerprint holds) uses the size of the run it continues."""
    if requested != "auto":
        return requested
    most = AUTO_GPU_BATCH
    if accelerator == "cpu":
        scale = 224 * 224 / (image_size[0] * image_size[1])
        most = max(8, min(16 * AUTO_CPU_BATCH, 8 * round(AUTO_CPU_BATCH * scale / 8)))
    if num_files is None or num_files <= 0:
        return most
    per_batch = math.ceil(num_files / math.ceil(num_files / most))
    return min(most, 8 * math.ceil(per_batch / 8))


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


def write_output(
    ds: ray.data.Dataset | None,
    files: ImageFiles,
    out: str,
    config: EmbedConfig,
    plan: Plan,
    state: WorkState | ShardWork,
) -> tuple[int, int, dict[str, str]]:
    """Runs ``ds`` (None: every row is done already) into the format's writer;
    a sharded format's fragments and merges in Ray tasks."""
    if isinstance(state, ShardWork):
        pieces = (
            []
            if ds is None
            else ds.map_batches(
                state.writer.fragment,
                fn_kwargs={"work": state.work, "shard_size": config.shard_size,
                           "on_error": config.on_error},
                fn_args=(ray.put(files.filenames.array),),
                batch_size=None,
                batch_format="numpy",
                num_cpus=plan.decode_cpus,
            ).iter_batches(batch_size=None, batch_format="pyarrow")
        )  # fmt: skip
        merge = ray.remote(num_cpus=plan.decode_cpus)(state.writer.merge)

        def run_merges(jobs: list[tuple[str, str, int, int]]) -> list[int]:
            return ray.get([merge.remote(*job) for job in jobs])

        with output_location(out, directory=True) as target:
            return write_shards(pieces, state, files, target, config, run_merges)
    batches = [] if ds is None else ds.iter_batches(batch_size=None,
                                                    batch_format="numpy")  # fmt: skip
    return write_gathered(batches, files, out, config, state)


def device_jpeg(config: EmbedConfig, accelerator: str) -> bool:
    """Whether the model's device decodes plain JPEGs (the tasks only read them)."""
    return config.jpeg_decode == "model" or (
        config.jpeg_decode == "auto" and accelerator == "gpu"
    )


def write_gathered(
    batches: Iterable[dict[str, Any]],
    files: ImageFiles,
    out: str,
    config: EmbedConfig,
    state: WorkState,
) -> tuple[int, int, dict[str, str]]:
    """Gathers on the driver (into the vectors file of the run's work directory),
    then writes."""
    embeddings, failed = gather(batches, files, state, config.on_error)
    with output_location(out, directory=False) as target:
        WRITERS[config.format](Path(target), embeddings)
    return len(embeddings.rows), embeddings.dim, failed


def write_shards(
    pieces: Iterable[pa.Table],
    state: ShardWork,
    files: ImageFiles,
    directory: str,
    config: EmbedConfig,
    run_merges: Callable[[list[tuple[str, str, int, int]]], list[int]],
) -> tuple[int, int, dict[str, str]]:
    """The writer's ``fragment`` has written each embedded block as per-shard
    fragments into the run's work location as it streamed (``pieces``: its summary
    rows), then ``run_merges`` runs the writer's ``merge`` once per shard into
    ``directory``: no shuffle, and the driver only counts rows per shard (a
    lost-row check like ``gather``'s), those of an interrupted run's fragments
    included."""
    shard_size = config.shard_size
    num_shards = math.ceil(len(files) / shard_size)
    starts = np.arange(num_shards) * shard_size
    # Rows per shard of earlier runs, and of them kept (not failed).
    earlier = np.add.reduceat(state.done.view(np.uint8), starts, dtype=np.int64)
    counts: Counter[int] = Counter(dict(enumerate(earlier.tolist())))
    kept = counts.copy()
    kept.subtract(Counter(i // shard_size for i in state.errors))
    failed_idx, failed_error = list(state.errors), list(state.errors.values())
    dim = 0
    progress = Progress(len(files) - state.num_done, "Embedded")
    for piece in pieces:
        raise_if_interrupted()
        dim = max(dim, *piece["dim"].to_pylist())
        shard = piece["shard"].to_pylist()
        piece_rows = piece["rows"].to_pylist()
        for s, n, k in zip(shard, piece_rows, piece["kept"].to_pylist(), strict=True):
            counts[s] += n
            kept[s] += k
        piece_failed = pc.list_flatten(piece["failed_idx"]).to_pylist()
        piece_errors = pc.list_flatten(piece["failed_error"]).to_pylist()
        if piece_failed and config.on_error == "raise":
            raise_failure(files.filenames[piece_failed[0]], piece_errors[0])
        failed_idx += piece_failed
        failed_error += piece_errors
        state.new += sum(piece_rows)
        progress.update(sum(piece_rows), failed=len(piece_failed))
    raise_if_interrupted()
    progress.close()
    expected = Counter(
        {s: min(shard_size, len(files) - s * shard_size) for s in range(num_shards)}
    )
    if counts != expected:
        lost = sum((expected - counts).values())
        raise RuntimeError(f"Embedded {len(files) - lost} of {len(files)} images; "
                           "rows lost.")  # fmt: skip
    order = sorted(zip(failed_idx, failed_error, strict=True))
    failed = {files.filenames[i]: error for i, error in order}
    check_some_decoded(failed, len(files))
    written = [s for s in sorted(kept) if kept[s] > 0]  # part k: k-th of these
    rows = run_merges([(state.work, directory, s, k) for k, s in enumerate(written)])
    dim = dim or _parts_dim(directory)  # a resume with nothing left to embed
    parts = {f"part-{k:05d}.parquet": n for k, n in enumerate(rows)}
    manifest = {"parts": parts, "num_rows": sum(rows), "dim": dim}
    storage.write_bytes(storage.join(directory, storage.MANIFEST),
                        (json.dumps(manifest, indent=1) + "\n").encode())  # fmt: skip
    return sum(rows), dim, failed


def _parts_dim(directory: str) -> int:
    names = sorted(storage.list_names(directory))
    if not names:
        return 0
    schema = storage.read_parquet_schema(storage.join(directory, names[0]))
    return schema.field("embedding").type.list_size


def manifest(
    files: ImageFiles,
    plan: Plan,
    batch: int,
    rows: np.ndarray | None = None,
    most: int = MAX_BLOCK_ROWS,
) -> list[pa.Table]:
    """Manifest rows ``(idx, path)`` in blocks, one decode task each: enough blocks
    to keep every actor and decode task busy, of 16 to ``most`` rows (a task
    costs a few milliseconds of Ray's time, and a small job no worker processes
    it cannot use), each a multiple or a divisor of the model's ``batch``.
    ``rows``: only these (a resumed run's), else all."""
    idx = np.arange(len(files), dtype=np.int64) if rows is None else rows
    num_blocks = 4 * max(plan.num_actors, plan.decode_tasks or 0, 4)
    size = block_rows(math.ceil(len(idx) / num_blocks), batch, most)
    # take: each block's own buffers, not a slice of all paths (a slice would
    # carry the whole buffer into every block's object).
    return [
        pa.table({"idx": idx[i : i + size],
                  "path": files.paths.array.take(idx[i : i + size])})
        for i in range(0, len(idx), size)
    ]  # fmt: skip


def max_block_rows(image_size: tuple[int, int]) -> int:
    """Rows per block whose decoded images take ``MAX_BLOCK_BYTES``: 256 at
    224x224; at least 16 (1024x1024 would give 12), at most 2048 (32x32: 12544)."""
    per_image = image_size[0] * image_size[1] * 3
    return min(MOST_BLOCK_ROWS, max(MIN_BLOCK_ROWS, MAX_BLOCK_BYTES // per_image))


def block_rows(target: int, batch: int, most: int = MAX_BLOCK_ROWS) -> int:
    """Rows per manifest block near ``target`` (clamped to 16-``most``) that tile the
    model's batches: Ray Data cuts a batch from one bundle of whole blocks and
    does not carry the rest over, so 1800 photos in blocks of 113 made batches
    of 64 and 49, each padded to 64 (``Embedder(batch_size=...)``): 12% of the
    forwards were padding. Whole batches per block, or equal blocks that divide
    one (they arrive in any order), leave partial batches only at the end."""
    target = min(most, max(MIN_BLOCK_ROWS, target))
    if target >= batch:
        return batch * (target // batch)
    # Equal divisors of the batch: blocks arrive in any order, any such set fills one.
    sizes = [d for d in range(MIN_BLOCK_ROWS, min(batch, most) + 1) if batch % d == 0]
    fitting = [d for d in sizes if d <= target]
    return max(fitting) if fitting else min(sizes, default=batch)


def gather(
    batches: Iterable[dict[str, Any]],
    files: ImageFiles,
    state: WorkState,
    on_error: Literal["skip", "raise"] = "skip",
) -> tuple[Embeddings, dict[str, str]]:
    """Scatters batches (in any order) by row index into the vectors file of
    ``state``, which may hold the rows of an interrupted run already."""
    progress = Progress(len(files) - state.num_done, "Embedded")
    for batch in batches:
        raise_if_interrupted()
        idx, emb = batch["idx"], batch["embedding"]
        state.vectors_for(emb.shape[1])[idx] = emb
        failed_rows = np.flatnonzero(batch["error"] != "")
        if len(failed_rows) and on_error == "raise":
            first = failed_rows[0]
            raise_failure(files.filenames[idx[first]], str(batch["error"][first]))
        errors = batch["error"][failed_rows].astype(str).tolist()
        state.add(idx, dict(zip(idx[failed_rows].tolist(), errors, strict=True)))
        progress.update(len(idx), failed=len(failed_rows))
    raise_if_interrupted()
    progress.close()
    if state.vectors is None or not state.done.all():
        raise RuntimeError(
            f"Embedded {state.num_done} of {len(files)} images; rows lost."
        )
    failed = {files.filenames[i]: state.errors[i] for i in sorted(state.errors)}
    check_some_decoded(failed, len(files))
    bad = np.zeros(len(files), dtype=bool)
    bad[list(state.errors)] = True
    rows = np.flatnonzero(~bad)
    return Embeddings(files.filenames.take(rows), state.vectors, rows), failed


def log_summary(summary: EmbedSummary) -> None:
    if summary.failed:
        first = list(summary.failed.items())[:SHOWN_FAILURES]
        listing = "\n".join(f"  {name}: {why}" for name, why in first)
        more = len(summary.failed) - len(first)
        logger.warning(
            f"{len(summary.failed)} images could not be decoded and are left out "
            f"of the output; all are listed in '{summary.failed_report}'"
            + (f", the first {len(first)}" if more else "")
            + f":\n{listing}"
        )
    rate = summary.num_images / summary.seconds if summary.seconds > 0 else 0.0
    skipped = f" ({len(summary.failed)} skipped)" if summary.failed else ""
    logger.info(
        f"Embedded {summary.num_images} images{skipped}, dim {summary.dim}, in "
        f"{summary.seconds:.1f} s ({rate:.1f} images/s). "
        f"Embeddings written to '{summary.out}'."
        + (f" Ray's logs: '{summary.ray_logs}'." if summary.ray_logs else "")
    )
