"""Sharded output (``format=parquet``) written by Ray tasks as rows stream, no shuffle.

Shard ``s`` holds the rows with ``idx // shard_size == s``. Two kinds of task:

1. ``write_fragments`` runs on every block the model stage emits (any rows, in any
   order): it sorts them, splits them into runs of consecutive rows within a shard
   and writes each run as a fragment file
   ``fragments/<shard>/<first idx>-<last idx>.parquet`` in the run's work location
   (the failures of the run, if any, in its metadata). It returns one small summary
   row per run (no embeddings), so the driver only counts.
2. ``merge_shard`` runs once per shard after all blocks are done: it streams that
   shard's fragments, in index order, into one ``part-NNNNN.parquet`` in row groups
   of a fixed size, so a part's bytes do not depend on how its rows were batched.

No process ever holds more than one block or one row group, and nothing passes
through an all-to-all shuffle. Part numbers count the shards that kept at least one
row, so they have no gaps; rows are in sorted filename order across the parts.

A fragment appears only complete, so the fragments in a work location are the rows
an interrupted run finished, whichever node wrote them: ``scan_fragments`` reads
them back (from their names, and the metadata of those holding failures) for
``resume_interrupted``.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from lightly_train.data import storage

PATTERN = "part-*.parquet"
FRAGMENTS = "fragments"
FAILED_KEY = b"lightly_train.failed"  # fragment metadata: {idx: error} as JSON
# Of embeddings per row group of a part. Writing one costs about 10x its size in
# memory (the rows gathered for it, Arrow's level arrays of a list column, the
# encoded pages): merging 100k x 576 floats peaked at +294-318 MB with 32 MB, at
# +80-98 MB with 8 MB (benchmarks/README.md). 8 MB is 4096 rows at 512 dimensions.
ROW_GROUP_BYTES = 8 * 1024**2
# Filenames are unique and embeddings are floats: a dictionary never pays, and
# Arrow tries one per column chunk before it gives up (a 2048-row fragment took
# 29-38 ms to write with it, 7.5 ms without, and was 12% larger).
WRITE_OPTIONS = {"use_dictionary": False}
_FRAGMENT = re.compile(r"(\d{12})-(\d{12})(-failed)?\.parquet")


def parquet_table(filenames: pa.Array | list[str], vectors: np.ndarray) -> pa.Table:
    """``filename`` (string) and ``embedding`` (fixed_size_list<float32>[D])."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    names = filenames if isinstance(filenames, pa.Array) else pa.array(filenames)
    return pa.table({"filename": names.cast(pa.string()), "embedding": embedding})


def write_fragments(
    rows: dict[str, np.ndarray],
    filenames: pa.Array | ray.ObjectRef,
    work: str,
    shard_size: int,
    on_error: str = "skip",
) -> pa.Table:
    """Writes the rows ``{"idx", "embedding", "error"}`` of one block as fragments
    under ``work``.

    ``filenames`` is the whole sorted list (an Arrow array, or its ref in the
    object store, which every task on a node shares without a copy). Returns per
    run: ``shard``, ``rows`` (all rows, for the lost-row check), ``kept``,
    ``dim`` and the failures as ``failed_idx``/``failed_error``. With
    ``on_error="raise"`` a run with a failure is not written (the driver fails the
    job on it, and a resumed run tries that file again).
    """
    if isinstance(filenames, ray.ObjectRef):  # zero-copy from the object store
        filenames = ray.get(filenames)
    order = np.argsort(rows["idx"], kind="stable")
    idx, vectors = rows["idx"][order], rows["embedding"][order]
    errors = np.asarray(rows["error"])[order]
    shards = idx // shard_size
    # One fragment per run of consecutive rows within a shard: a block may join
    # rows of several decode blocks (0-15 with 48-63), and only fragments that
    # never interleave merge in row order by their first index.
    breaks = (shards[1:] != shards[:-1]) | (idx[1:] != idx[:-1] + 1)
    starts = np.flatnonzero(np.r_[True, breaks])
    summary: dict[str, list] = {
        k: [] for k in ("shard", "rows", "kept", "dim", "failed_idx", "failed_error")
    }
    for begin, end in zip(starts, [*starts[1:], len(idx)], strict=True):
        piece, ok = idx[begin:end], errors[begin:end] == ""
        shard = int(shards[begin])
        if ok.all() or on_error != "raise":
            names = filenames.take(pa.array(piece[ok]))
            table = parquet_table(names, vectors[begin:end][ok])
            failed = {int(i): str(e) for i, e in zip(piece[~ok], errors[begin:end][~ok],
                                                     strict=True)}  # fmt: skip
            if failed:
                table = table.replace_schema_metadata({FAILED_KEY: json.dumps(failed)})
            name = f"{piece[0]:012d}-{piece[-1]:012d}{'-failed' if failed else ''}"
            where = storage.join(work, f"{FRAGMENTS}/{shard:05d}/{name}.parquet")
            storage.write_parquet(table, where, **WRITE_OPTIONS)
        summary["shard"].append(shard)
        summary["rows"].append(len(piece))
        summary["kept"].append(int(ok.sum()))
        summary["dim"].append(vectors.shape[1])
        summary["failed_idx"].append(piece[~ok].tolist())
        summary["failed_error"].append([str(e) for e in errors[begin:end][~ok]])
    return pa.table(
        summary,
        schema=pa.schema(
            [
                ("shard", pa.int64()),
                ("rows", pa.int64()),
                ("kept", pa.int64()),
                ("dim", pa.int64()),
                ("failed_idx", pa.list_(pa.int64())),
                ("failed_error", pa.list_(pa.string())),
            ]
        ),
    )


def merge_shard(work: str, directory: str, shard: int, part: int) -> int:
    """Streams the fragments of ``shard`` under ``work`` into
    ``<directory>/part-<part>.parquet``; returns its number of rows. Fragment names
    start with their first row index, zero-padded, and fragments never interleave,
    so name order is row order. The fragments stay until the output is published:
    an interrupted publish can be resumed."""
    fragments = storage.join(work, f"{FRAGMENTS}/{shard:05d}")
    names = sorted(n for n in storage.list_names(fragments) if _FRAGMENT.fullmatch(n))
    rows, buffered, group = 0, 0, 0
    pending: list[pa.Table] = []
    writer = None
    with storage.open_output(
        storage.join(directory, f"part-{part:05d}.parquet")
    ) as sink:
        for name in names:
            table = storage.read_parquet(storage.join(fragments, name))
            if table.num_rows == 0:
                continue
            table = table.replace_schema_metadata(None)
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema, **WRITE_OPTIONS)
                dim = table.schema.field("embedding").type.list_size
                group = max(1024, ROW_GROUP_BYTES // (4 * dim))
            pending.append(table)
            buffered += table.num_rows
            rows += table.num_rows
            while buffered >= group:
                joined = pa.concat_tables(pending)
                writer.write_table(joined.slice(0, group).combine_chunks(), group)
                pending, buffered = [joined.slice(group)], buffered - group
        if writer is not None:
            if buffered:
                writer.write_table(pa.concat_tables(pending).combine_chunks(), group)
            writer.close()
    return rows


def scan_fragments(work: str, num_rows: int) -> tuple[np.ndarray, dict[int, str]]:
    """The rows the fragments under ``work`` hold (done, kept or failed) and the
    failures among them."""
    done = np.zeros(num_rows, dtype=bool)
    failed: dict[int, str] = {}
    base = storage.join(work, FRAGMENTS)
    for path in storage.list_files(base):
        match = _FRAGMENT.fullmatch(path.rsplit("/", 1)[-1])
        if match is None:  # a local write that was cut off (``*.tmp``)
            continue
        done[int(match[1]) : int(match[2]) + 1] = True
        if match[3]:
            meta = storage.read_parquet_schema(storage.join(base, path)).metadata
            failed.update({int(i): e for i, e in json.loads(meta[FAILED_KEY]).items()})
    return done, failed
