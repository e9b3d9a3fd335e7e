"""Sharded output (``format=parquet``) written by Ray tasks as rows stream, no shuffle.

Shard ``s`` holds the rows with ``idx // shard_size == s``. Two kinds of task:

1. ``write_fragments`` runs on every block the model stage emits (any rows, in any
   order): it sorts them, splits them into runs of consecutive rows within a shard
   and writes each run as a fragment file ``.fragments/<shard>/<first idx>.parquet``.
   It returns one small summary row per run (no embeddings), so the driver only
   counts.
2. ``merge_shard`` runs once per shard after all blocks are done: it streams that
   shard's fragments, in index order, into one ``part-NNNNN.parquet``.

No process ever holds more than one block or one fragment, and nothing passes
through an all-to-all shuffle. Part numbers count the shards that kept at least one
row, so they have no gaps; rows are in sorted filename order across the parts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from lightly_train.data import storage

PATTERN = "part-*.parquet"
FRAGMENTS = ".fragments"


def parquet_table(filenames: pa.Array | list[str], vectors: np.ndarray) -> pa.Table:
    """``filename`` (string) and ``embedding`` (fixed_size_list<float32>[D])."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table(
        {"filename": pa.array(filenames, pa.string()), "embedding": embedding}
    )


def write_fragments(
    rows: dict[str, np.ndarray],
    filenames: pa.Array | ray.ObjectRef,
    directory: str,
    shard_size: int,
) -> pa.Table:
    """Writes the rows ``{"idx", "embedding", "error"}`` of one block as fragments.

    ``filenames`` is the whole sorted list (an Arrow array, or its ref in the
    object store, which every task on a node shares without a copy). Returns per
    piece: ``shard``, ``rows`` (all rows, for the lost-row check), ``kept``,
    ``dim`` and the failures as ``failed_idx``/``failed_error``.
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
        if ok.any():
            names = filenames.take(pa.array(piece[ok]))
            where = storage.join(
                storage.join(directory, FRAGMENTS),
                f"{shard:05d}/{piece[0]:012d}.parquet",
            )
            storage.write_parquet(parquet_table(names, vectors[begin:end][ok]), where)
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


def merge_shard(directory: str, shard: int, part: int) -> int:
    """Streams the fragments of ``shard`` into ``part-<part>.parquet``; returns its
    number of rows. Fragment names are their first row index, zero-padded, so name
    order is row order."""
    fragments = storage.join(storage.join(directory, FRAGMENTS), f"{shard:05d}")
    names = sorted(storage.list_names(fragments))
    rows = 0
    writer = None
    out = storage.join(directory, f"part-{part:05d}.parquet")
    with storage.open_output(out) as sink:
        for name in names:
            table = storage.read_parquet(storage.join(fragments, name))
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema)
            writer.write_table(table)
            rows += table.num_rows
        if writer is not None:
            writer.close()
    storage.remove_tree(fragments)
    return rows
