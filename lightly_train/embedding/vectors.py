"""The ``(N, D)`` float32 rows that a gathered ``embed`` collects on the driver: a
``.npy`` file on local disk, written and read with ``pwrite`` and ``pread``.

Not a memory map: every page a map touches counts in the driver's resident memory
until the map is closed (writing 200k x 576 floats through ``np.memmap`` raised the
process's peak RSS from 30 to 470 MB). Pages written with ``pwrite`` live in the
kernel's page cache, which writes them back and reclaims them as it needs, so the
driver's memory stays flat in the number of images. The file is an ordinary
``.npy`` (``np.load`` reads it), and a row is on disk, for any later process, as
soon as ``__setitem__`` returns: a killed driver loses none that were written.

Example:
    >>> vectors = VectorFile.create("vectors.npy", num_rows=4, dim=3)  # doctest: +SKIP
    >>> vectors[[2, 0]] = [[7, 8, 9], [1, 2, 3]]  # doctest: +SKIP
    >>> VectorFile.open("vectors.npy")[0:1]  # doctest: +SKIP
    array([[1., 2., 3.]], dtype=float32)
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

DTYPE = np.dtype("<f4")
AnyPath = str | os.PathLike[str]


class VectorFile:
    """Rows of float32 vectors in a ``.npy`` file, indexed like an array by row: an
    int, a slice, or a sequence of row indices (in any order)."""

    def __init__(self, path: AnyPath, shape: tuple[int, int],
                 offset: int, fd: int) -> None:  # fmt: skip
        self.path = Path(path)
        self.shape = shape
        self._offset = offset  # of row 0: the header's length
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)

    @classmethod
    def create(cls, path: AnyPath, num_rows: int, dim: int) -> VectorFile:
        """A new file of ``num_rows`` zero rows (sparse: nothing is written yet)."""
        shape = (num_rows, dim)
        with open(path, "wb") as f:
            header = {"descr": DTYPE.str, "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(f, header)
            offset = f.tell()
            f.truncate(offset + num_rows * dim * DTYPE.itemsize)
        return cls(path, shape, offset, os.open(path, os.O_RDWR))

    @classmethod
    def open(cls, path: AnyPath) -> VectorFile:
        """An existing file, as ``create`` (or ``np.save`` of such rows) wrote it."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)  # fmt: skip
            shape, fortran, dtype = read(f)
            offset = f.tell()
        if dtype != DTYPE or fortran or len(shape) != 2:
            raise ValueError(f"'{path}' is not a C-ordered (N, D) float32 array.")
        return cls(path, (int(shape[0]), int(shape[1])), offset,
                   os.open(path, os.O_RDWR))  # fmt: skip

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: int | slice | Any) -> np.ndarray:
        rows = self._rows(key)
        out = np.empty((len(rows), self.shape[1]), dtype=DTYPE)
        for start, run, first in self._runs(rows):
            self._transfer(os.preadv, out[start : start + len(run)], first)
        return out[0] if isinstance(key, int | np.integer) else out

    def __setitem__(self, key: int | slice | Any, values: Any) -> None:
        rows = self._rows(key)
        values = np.asarray(values, dtype=DTYPE).reshape(len(rows), self.shape[1])
        for start, run, first in self._runs(rows):
            block = np.ascontiguousarray(values[start : start + len(run)])
            self._transfer(os.pwritev, block, first)

    def flush(self) -> None:
        """To the disk itself (rows are safe from a killed process without this)."""
        os.fsync(self._fd)

    def close(self) -> None:
        self._closer()

    def _rows(self, key: int | slice | Any) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(*key.indices(self.shape[0]), dtype=np.int64)
        rows = np.atleast_1d(np.asarray(key, dtype=np.int64))
        rows = np.where(rows < 0, rows + self.shape[0], rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"Rows out of range for {self.shape[0]} rows.")
        return rows

    @staticmethod
    def _runs(rows: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
        """``(position in rows, run, first row)`` for each run of consecutive rows;
        rows in any order keep their positions."""
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate(([0], breaks)) if len(rows) else np.array([], int)
        runs = np.split(rows, breaks) if len(rows) else []
        return [(int(s), r, int(r[0])) for s, r in zip(starts, runs, strict=True)]

    def _transfer(self, call: Any, block: np.ndarray, first_row: int) -> None:
        """``preadv``/``pwritev`` of a contiguous block at ``first_row``, in full."""
        view = memoryview(block).cast("B")
        position = self._offset + first_row * self.shape[1] * DTYPE.itemsize
        done = 0
        while done < len(view):
            moved = call(self._fd, [view[done:]], position + done)
            if moved <= 0:
                raise OSError(f"Short {call.__name__} on '{self.path}'.")
            done += moved
