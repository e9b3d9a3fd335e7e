"""The output stage: embedded batches -> the format's writer.

``gather`` scatters the batches of either runner (Ray's, ``local.py``'s) by row
index into the run's vectors file on the driver, then the writer writes ``out``. A
sharded format's batches are written as per-shard fragments where they were
embedded (Ray tasks, or this process), and ``write_shards`` only counts their rows
before one merge per shard. ``write_output`` wires Ray's dataset into either.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from lightly_train._progress import Progress
from lightly_train._signals import raise_if_interrupted
from lightly_train.data import storage
from lightly_train.data.names import ImageFiles
from lightly_train.data.publish import output_location
from lightly_train.embedding.config import EmbedConfig
from lightly_train.embedding.report import check_some_decoded, raise_failure
from lightly_train.embedding.resume import ShardWork, WorkState
from lightly_train.embedding.writers import WRITERS, Embeddings
from lightly_train.sizing import Plan


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
