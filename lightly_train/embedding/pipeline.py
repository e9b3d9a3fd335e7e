"""The ``embed`` pipeline, read top to bottom.

list + sort (driver) -> decode (CPU tasks) -> embed (actor pool) -> gather by row
index (driver, into a memory map) -> writer -> atomic rename to ``out``
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import ray
from torch import nn

from lightly_train._io import check_out_dir, check_out_file, output_location
from lightly_train.checkpoint import check_custom_model, load_checkpoint_entry
from lightly_train.config import validate_config
from lightly_train.data import storage
from lightly_train.data.decode import decode_batch
from lightly_train.data.files import ImageFiles, list_image_files
from lightly_train.embedding.config import EmbedConfig
from lightly_train.embedding.embedder import Embedder
from lightly_train.embedding.writers import (
    PARQUET_PATTERN,
    SHARDED_FORMATS,
    WRITERS,
    Embeddings,
    write_parquet_shard,
)
from lightly_train.errors import LightlyTrainError
from lightly_train.runtime import Plan, node_cpus, plan_actors, ray_session

logger = logging.getLogger(__name__)

DECODE_TASK_MEMORY = 512 * 1024**2  # bytes


@dataclass(frozen=True)
class EmbedSummary:
    """What an ``embed`` run wrote."""

    out: str  # a path or URI, as given
    num_images: int
    dim: int
    failed: dict[str, str]  # filename -> why it could not be decoded
    seconds: float


def embed(
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] | list[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str],
    format: str = "torch",
    image_size: int | tuple[int, int] = 224,
    batch_size: int = 128,
    num_workers: int | Literal["auto"] = "auto",
    devices: int | Literal["auto"] = "auto",
    accelerator: Literal["auto", "cpu", "gpu"] = "auto",
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true",
    overwrite: bool = False,
    model: nn.Module | None = None,
    shard_size: int = 100_000,
) -> EmbedSummary:
    """Embeds every image under ``data`` with a trained checkpoint and writes them.

    Runs on the Ray cluster at ``RAY_ADDRESS`` (as under ``ray job submit``) or on a
    local Ray. Rows are in sorted filename order; filenames are relative to ``data``.
    Images that cannot be decoded are left out and named in a warning.

    Args:
        out: Output file (a directory for ``parquet``). Written to a temp file
            beside it, then renamed.
        data: Directory with images, or a list of directories and image files.
        checkpoint: A lightly-train checkpoint, e.g. ``out/checkpoints/last.ckpt``.
        format: ``"torch"``, ``"csv"``, ``"lightly_csv"``, or ``"parquet"``: a
            directory of ``part-NNNNN.parquet`` shards written by Ray tasks, for
            datasets too large to gather in one process.
        image_size: Resize images to this size, int or (height, width).
        batch_size: Images per model forward.
        num_workers: Parallel decode tasks; ``"auto"`` uses the free CPUs.
        devices: GPUs to use (or CPU model actors when there are no GPUs).
        accelerator: ``"cpu"``, ``"gpu"`` or ``"auto"``.
        precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"`` (GPU only).
        overwrite: Replace ``out`` if it exists.
        model: Only for checkpoints trained from a custom backbone module: a fresh
            instance of that module.
        shard_size: ``parquet`` only: rows per shard file.

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
    sharded = config.format in SHARDED_FORMATS
    out = (
        check_out_dir(config.out, config.overwrite, PARQUET_PATTERN)
        if sharded
        else check_out_file(config.out, config.overwrite, "embeddings.pth")
    )
    entry = load_checkpoint_entry(config.checkpoint)
    check_custom_model(entry, config.model)  # fails here, not in an actor
    files = list_image_files(config.data)
    logger.info(f"Embedding {len(files)} images from {config.data}.")
    with ray_session():
        plan = plan_actors(
            config.accelerator,
            config.devices,
            config.num_workers,
            config.precision,
            ray.cluster_resources(),
            node_cpus(),
        )
        ds = ray.data.from_arrow(manifest(files, plan, with_filenames=sharded))
        ds = ds.map_batches(
            decode_batch,
            fn_kwargs={"image_size": config.size},
            batch_size=None,  # one manifest block per task
            num_cpus=1,
            # Room for a large photo's decode buffers and the block of arrays. As a
            # resource the actors don't ask for, it also keeps Ray Data from fusing
            # decode into the model actors: decoding stays in parallel CPU tasks.
            memory=DECODE_TASK_MEMORY,
            compute=ray.data.TaskPoolStrategy(size=plan.decode_tasks),
        )
        ds = ds.map_batches(
            Embedder,
            fn_constructor_kwargs={
                "checkpoint": ray.put(entry),
                "device": "cuda" if plan.accelerator == "gpu" else "cpu",
                "precision": config.precision,
                "num_threads": plan.cpus_per_actor,
                "model": config.model,
            },
            batch_size=config.batch_size,
            num_cpus=plan.cpus_per_actor,
            num_gpus=plan.gpus_per_actor,
            compute=ray.data.ActorPoolStrategy(size=plan.num_actors),
        )
        if sharded:
            with output_location(out, directory=True) as target:
                num_images, dim, failed = write_shards(ds, target, config.shard_size)
        else:
            num_images, dim, failed = gather_and_write(ds, files, out, config.format)
    summary = EmbedSummary(out, num_images, dim, failed, time.perf_counter() - start)
    log_summary(summary)
    return summary


def gather_and_write(
    ds: ray.data.Dataset, files: ImageFiles, out: str, format: str
) -> tuple[int, int, dict[str, str]]:
    """Gathers on the driver (into a memory map beside ``out``), then writes."""
    beside = None if storage.is_uri(out) else Path(out).parent
    with tempfile.TemporaryDirectory(dir=beside, prefix=".embed-") as tmp:
        batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        embeddings, failed = gather(batches, files, Path(tmp) / "vectors.npy")
        with output_location(out, directory=False) as target:
            WRITERS[format](Path(target), embeddings)
    return len(embeddings.rows), embeddings.dim, failed


def write_shards(
    ds: ray.data.Dataset, directory: str, shard_size: int
) -> tuple[int, int, dict[str, str]]:
    """Each shard of ``shard_size`` consecutive rows is grouped and written by a
    Ray task: the driver only sees one summary row per shard."""
    ds = ds.add_column("shard", lambda batch: batch["idx"] // shard_size)
    results = ds.groupby("shard").map_groups(
        write_parquet_shard,
        fn_kwargs={"directory": directory, "shard_size": shard_size},
        batch_format="numpy",
    )
    summaries = results.take_all()
    failed = dict(
        line.split("\t", 1)
        for row in summaries
        for line in str(row["failed"]).splitlines()
    )
    num_images = sum(int(row["rows"]) for row in summaries)
    if num_images == 0:
        raise LightlyTrainError(
            f"None of the {len(failed)} images could be decoded, e.g. "
            f"{next(iter(failed.items()))}. Check that data holds valid images."
        )
    return num_images, int(summaries[0]["dim"]), dict(sorted(failed.items()))


def manifest(
    files: ImageFiles, plan: Plan, with_filenames: bool = False
) -> list[pa.Table]:
    """Manifest rows ``(idx, path[, filename])`` in blocks, one decode task each.

    Filenames travel with the rows only for writers that run as Ray tasks.
    """
    num_blocks = max(1, 4 * max(plan.num_actors, plan.decode_tasks or 0, 4))
    rows = min(256, max(1, math.ceil(len(files) / num_blocks)))
    idx = np.arange(len(files), dtype=np.int64)
    blocks = []
    for i in range(0, len(files), rows):
        columns = {"idx": idx[i : i + rows], "path": files.paths[i : i + rows]}
        if with_filenames:
            columns["filename"] = files.filenames[i : i + rows]
        blocks.append(pa.table(columns))
    return blocks


def gather(
    batches: Iterable[dict[str, Any]], files: ImageFiles, path: Path
) -> tuple[Embeddings, dict[str, str]]:
    """Scatters batches (in any order) into a memory map by row index."""
    vectors: np.ndarray | None = None
    seen = np.zeros(len(files), dtype=bool)
    failed: dict[str, str] = {}
    for batch in batches:
        idx, emb = batch["idx"], batch["embedding"]
        if vectors is None:
            shape = (len(files), emb.shape[1])
            vectors = np.lib.format.open_memmap(path, "w+", np.float32, shape)
        vectors[idx] = emb
        seen[idx] = True
        for i, error in zip(idx, batch["error"], strict=True):
            if error:
                failed[files.filenames[i]] = str(error)
    if vectors is None or not seen.all():
        raise RuntimeError(f"Embedded {seen.sum()} of {len(files)} images; rows lost.")
    if len(failed) == len(files):
        raise LightlyTrainError(
            f"None of the {len(files)} images could be decoded, e.g. "
            f"{next(iter(failed.items()))}. Check that data holds valid images."
        )
    keep = [i for i, name in enumerate(files.filenames) if name not in failed]
    rows = np.asarray(keep, dtype=np.int64)
    return Embeddings([files.filenames[i] for i in keep], vectors, rows), failed


def log_summary(summary: EmbedSummary) -> None:
    if summary.failed:
        listing = "\n".join(f"  {n}: {why}" for n, why in summary.failed.items())
        logger.warning(
            f"{len(summary.failed)} images could not be decoded and are left out "
            f"of the output:\n{listing}"
        )
    rate = summary.num_images / summary.seconds if summary.seconds > 0 else 0.0
    skipped = f" ({len(summary.failed)} skipped)" if summary.failed else ""
    logger.info(
        f"Embedded {summary.num_images} images{skipped}, dim {summary.dim}, in "
        f"{summary.seconds:.1f} s ({rate:.1f} images/s). "
        f"Embeddings written to '{summary.out}'."
    )
