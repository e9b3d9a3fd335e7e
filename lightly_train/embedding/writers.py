"""Output formats for embeddings, as specified in the ``embed`` docs.

A writer takes the gathered ``Embeddings`` and a path; it streams the rows in order.
Add a format by adding a function to ``WRITERS`` (or a ``ShardedWriter`` to
``SHARDED_WRITERS``); the tests loop over them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lightly_train.embedding import shards
from lightly_train.embedding.vectors import VectorFile

CHUNK_ROWS = 4096
CSV_ROWS = 256


@dataclass(frozen=True)
class Embeddings:
    """Embeddings in output order: row ``rows[i]`` of ``vectors`` is ``filenames[i]``.

    ``vectors`` may be a file larger than the output (``vectors.VectorFile``; rows of
    images that could not be decoded are skipped through ``rows``), so writers read
    it chunk by chunk.
    """

    filenames: Sequence[str]  # a list, or ``names.Names``
    vectors: np.ndarray | VectorFile  # (N_all, D) float32
    rows: np.ndarray  # (N,) int64 indices into vectors

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def chunks(self) -> Iterator[tuple[list[str], np.ndarray]]:
        for start in range(0, len(self.rows), CHUNK_ROWS):
            end = start + CHUNK_ROWS
            yield list(self.filenames[start:end]), self.vectors[self.rows[start:end]]


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
            # Text a few rows at a time: a Python string per number (4096 x 512
            # of them took about 150 MB).
            for start in range(0, len(names), CSV_ROWS):
                text = _format_floats(vectors[start : start + CSV_ROWS])
                for name, values in zip(names[start : start + CSV_ROWS], text,
                                        strict=True):  # fmt: skip
                    writer.writerow([name, *values, *suffix])


def write_csv(path: Path, embeddings: Embeddings) -> None:
    """``filename,embedding_0,...``: one row per image."""
    _write_csv(path, embeddings, "filename", None)


def write_lightly_csv(path: Path, embeddings: Embeddings) -> None:
    """``filenames,embedding_0,...,labels`` with labels 0, for the Lightly Worker."""
    _write_csv(path, embeddings, "filenames", ("labels", "0"))


def write_torch(path: Path, embeddings: Embeddings) -> None:
    """``{"embeddings": Tensor (N, D) float32, "filenames": list[str]}``."""
    import torch  # here: the CLI and Ray's decode workers need no torch

    tensor = torch.from_numpy(output_rows(embeddings))
    torch.save({"embeddings": tensor, "filenames": list(embeddings.filenames)}, path)


def output_rows(embeddings: Embeddings) -> np.ndarray:
    """The output's ``(N, D)`` rows as one array. From a ``VectorFile``, a
    copy-on-write map of the file (of a compact copy beside it where rows were
    skipped): its pages are the kernel's page cache, which it can reclaim, not the
    driver's own memory (200k x 576 floats: 440 MB less of it for ``torch``)."""
    vectors, rows = embeddings.vectors, embeddings.rows
    if not isinstance(vectors, VectorFile) or not len(rows):
        return np.ascontiguousarray(vectors[rows])
    if not np.array_equal(rows, np.arange(len(vectors))):
        compact = VectorFile.create(vectors.path.with_name("output-rows.npy"),
                                    len(rows), embeddings.dim)  # fmt: skip
        for start in range(0, len(rows), CHUNK_ROWS):
            end = start + CHUNK_ROWS
            compact[start:end] = vectors[rows[start:end]]
        vectors = compact
    return np.load(vectors.path, mmap_mode="c")


WRITERS: dict[str, Callable[[Path, Embeddings], None]] = {
    "csv": write_csv,
    "lightly_csv": write_lightly_csv,
    "torch": write_torch,
}


@dataclass(frozen=True)
class ShardedWriter:
    """A format written as a directory of shards by Ray tasks, never gathered on
    the driver: ``fragment`` runs on every embedded block, ``merge`` once per shard
    (see ``shards.py``)."""

    pattern: str  # the names of its files, e.g. "part-*.parquet"
    fragment: Callable[..., pa.Table]
    merge: Callable[[str, str, int, int], int]  # (work, directory, shard, part)
    scan: Callable[[str, int], tuple[np.ndarray, dict[int, str]]]  # for resuming


SHARDED_WRITERS: dict[str, ShardedWriter] = {
    "parquet": ShardedWriter(
        shards.PATTERN,
        shards.write_fragments,
        shards.merge_shard,
        shards.scan_fragments,
    ),
}
