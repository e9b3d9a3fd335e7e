"""The image list's columns: strings held in Arrow arrays, not Python objects, so
that a driver listing millions of files holds a few bytes per name."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lightly_train.errors import LightlyTrainError

# Strings converted at once from Python: bounds the driver's transient memory.
CHUNK = 8192


class Names(Sequence[str]):
    """Strings in one Arrow array: their bytes and an 8-byte offset each, where a
    list of Python strings takes about 60 bytes more per string (a million names:
    about 70 MB less). ``names[i]`` is a ``str``, ``names[a:b]`` a ``list[str]``;
    ``array`` is the Arrow array itself (``large_string``).

    Example:
        >>> names = Names(["a.png", "b.png"])
        >>> names[1], names[:1], len(names)
        ('b.png', ['a.png'], 2)
    """

    def __init__(self, values: pa.Array | Iterable[str]) -> None:
        if not isinstance(values, pa.Array):
            values = columns(((v,) for v in values), 1)[0]
        self.array: pa.LargeStringArray = values.cast(pa.large_string())

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, key: int) -> str: ...
    @overload
    def __getitem__(self, key: slice) -> list[str]: ...
    def __getitem__(self, key: int | slice) -> str | list[str]:
        if isinstance(key, slice):
            return self.array[key].to_pylist()
        return self.array[key].as_py()

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.array), CHUNK):
            yield from self.array[start : start + CHUNK].to_pylist()

    def take(self, rows: np.ndarray) -> Names:
        return Names(self.array.take(pa.array(rows, pa.int64())))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Names):
            return self.array.equals(other.array)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Names({self[:3]}{' ...' if len(self) > 3 else ''}, n={len(self)})"


@dataclass(frozen=True)
class ImageFiles:
    """Sorted image files: ``filenames[i]`` is the output name of ``paths[i]``.
    Both are ``Names``, so the driver holds no Python object per file."""

    filenames: Names
    paths: Names
    num_ignored: int  # files with other extensions
    num_hidden: int  # hidden files and hidden directories

    def __post_init__(self) -> None:  # lists of strings are taken too
        for field in ("filenames", "paths"):
            if not isinstance(getattr(self, field), Names):
                object.__setattr__(self, field, Names(getattr(self, field)))

    def __len__(self) -> int:
        return len(self.filenames)


def columns(rows: Iterable[tuple[str, ...]], width: int) -> list[pa.Array]:
    """Rows of strings as ``width`` Arrow columns, converted ``CHUNK`` rows at a
    time (the driver never holds all of them as Python strings)."""
    parts: list[list[pa.Array]] = [[] for _ in range(width)]
    rows = iter(rows)
    while True:
        chunk = list(itertools.islice(rows, CHUNK))
        columns = zip(*chunk, strict=True) if chunk else [()] * width
        for part, column in zip(parts, columns, strict=True):
            part.append(large_strings(column))
        if len(chunk) < CHUNK:
            return [pa.concat_arrays(part) for part in parts]


def large_strings(strings: Sequence[str]) -> pa.Array:
    """``pa.array(strings, pa.large_string())`` built from the UTF-8 bytes. Arrow's
    converter from Python objects left the process 40-52 MB larger after 200k
    paths (10 MB of arrays), kept after the arrays were deleted and whichever
    Arrow memory pool; this way it is +14 MB, and it goes with the arrays. A
    name that is not valid UTF-8 (``os`` gives its bytes as surrogates) cannot
    be an output filename: it is named, with the fix.

    Example:
        >>> large_strings(["a.png", "b/c.jpg"]).to_pylist()
        ['a.png', 'b/c.jpg']
    """
    try:
        encoded = [s.encode() for s in strings]
    except UnicodeEncodeError as error:  # its object: the name
        name = os.fsencode(error.object)
        raise LightlyTrainError(
            f"The file name {name!r} is not valid UTF-8, so it cannot be an output "
            "filename. Rename it to UTF-8 (e.g. convmv -f latin1 -t utf8 --notest "
            "-r DIR), or move it out of the data."
        ) from None
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.LargeStringArray.from_buffers(len(encoded), pa.py_buffer(offsets), data)


def repeated(names: pa.Array) -> np.ndarray:
    """Positions ``i`` of sorted ``names`` where ``names[i] == names[i + 1]``."""
    if len(names) < 2:
        return np.zeros(0, dtype=np.int64)
    same = pc.equal(names[1:], names[:-1]).to_numpy(zero_copy_only=False)
    return np.flatnonzero(same)
