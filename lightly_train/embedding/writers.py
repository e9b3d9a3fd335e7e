"""Output formats for embeddings, as specified in the ``embed`` docs.

A writer takes the gathered ``Embeddings`` and a path; it streams the rows in order.
Add a format by adding a function to ``WRITERS``; the tests loop over it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from lightly_train.data import storage

CHUNK_ROWS = 4096


@dataclass(frozen=True)
class Embeddings:
    """Embeddings in output order: row ``rows[i]`` of ``vectors`` is ``filenames[i]``.

    ``vectors`` may be a memory map larger than the output (rows of images that could
    not be decoded are skipped through ``rows``), so writers read it chunk by chunk.
    """

    filenames: list[str]
    vectors: np.ndarray  # (N_all, D) float32
    rows: np.ndarray  # (N,) int64 indices into vectors

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def chunks(self) -> Iterator[tuple[list[str], np.ndarray]]:
        for start in range(0, len(self.rows), CHUNK_ROWS):
            end = start + CHUNK_ROWS
            yield self.filenames[start:end], self.vectors[self.rows[start:end]]


def _format_floats(chunk: np.ndarray) -> np.ndarray:
    # Shortest text that reads back to the same float32 (0.1, not 0.10000000149).
    text = pc.cast(pa.array(chunk.ravel()), pa.string())
    return np.asarray(text.to_numpy(zero_copy_only=False)).reshape(chunk.shape)


def _write_csv(
    path: Path, embeddings: Embeddings, first: str, last: tuple[str, str] | None
) -> None:
    columns = [f"embedding_{i}" for i in range(embeddings.dim)]
    header = [first, *columns, *([last[0]] if last else [])]
    suffix = [last[1]] if last else []
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for names, vectors in embeddings.chunks():
            for name, values in zip(names, _format_floats(vectors), strict=True):
                writer.writerow([name, *values, *suffix])


def write_csv(path: Path, embeddings: Embeddings) -> None:
    """``filename,embedding_0,...``: one row per image."""
    _write_csv(path, embeddings, "filename", None)


def write_lightly_csv(path: Path, embeddings: Embeddings) -> None:
    """``filenames,embedding_0,...,labels`` with labels 0, for the Lightly Worker."""
    _write_csv(path, embeddings, "filenames", ("labels", "0"))


def write_torch(path: Path, embeddings: Embeddings) -> None:
    """``{"embeddings": Tensor (N, D) float32, "filenames": list[str]}``."""
    tensor = torch.empty((len(embeddings.rows), embeddings.dim), dtype=torch.float32)
    start = 0
    for names, vectors in embeddings.chunks():
        tensor[start : start + len(names)] = torch.from_numpy(vectors)
        start += len(names)
    torch.save({"embeddings": tensor, "filenames": list(embeddings.filenames)}, path)


WRITERS: dict[str, Callable[[Path, Embeddings], None]] = {
    "csv": write_csv,
    "lightly_csv": write_lightly_csv,
    "torch": write_torch,
}

# Formats written as a directory of shards by Ray tasks, never gathered on the driver.
SHARDED_FORMATS = ("parquet",)
PARQUET_PATTERN = "part-*.parquet"


def parquet_table(filenames: list[str], vectors: np.ndarray) -> pa.Table:
    """``filename`` (string) and ``embedding`` (fixed_size_list<float32>[D])."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table(
        {"filename": pa.array(filenames, pa.string()), "embedding": embedding}
    )


def write_parquet_shard(
    rows: dict[str, np.ndarray], directory: str, shard_size: int
) -> dict[str, np.ndarray]:
    """Writes one shard ``part-%05d.parquet`` (rows of ``idx // shard_size``) in
    filename order, without the rows that failed to decode.

    Runs as a Ray task on one group of rows; returns a one-row summary:
    ``{"shard", "rows", "dim", "failed"}`` with ``failed`` as "name\terror" lines.
    """
    order = np.argsort(rows["idx"], kind="stable")
    idx, names = rows["idx"][order], rows["filename"][order]
    errors, vectors = rows["error"][order], rows["embedding"][order]
    ok = errors == ""
    shard = int(idx[0]) // shard_size
    if ok.any():
        table = parquet_table([str(n) for n in names[ok]], vectors[ok])
        where = storage.join(directory, f"part-{shard:05d}.parquet")
        if storage.is_uri(where):
            fs, path = storage.resolve(where)
            pq.write_table(table, path, filesystem=fs)
        else:
            pq.write_table(table, where)
    failed = "\n".join(
        f"{n}\t{e}" for n, e in zip(names[~ok], errors[~ok], strict=True)
    )
    return {
        "shard": np.array([shard]),
        "rows": np.array([int(ok.sum())]),
        "dim": np.array([vectors.shape[1]]),
        "failed": np.array([failed], dtype=object),
    }
