"""Find, filter and sort the image files under ``data``.

Filenames are relative to the directory they were found under, with ``/`` separators,
and the list is sorted by filename: this order is the order of every output.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lightly_train.data import storage
from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff",
    ".webp",
)  # fmt: skip


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
            values = _columns(((v,) for v in values), 1)[0]
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


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(root: str) -> tuple[pa.Array, pa.Array, int, int]:
    """Names and locations of the images under a directory or remote prefix, plus
    the counts of other files and of hidden entries (a hidden local directory counts
    once: it is not entered)."""
    ignored = hidden = 0

    def images() -> Iterator[tuple[str, str]]:
        nonlocal ignored, hidden
        for name, location in storage.walk(root):
            if name.startswith(".") or "/." in name:
                hidden += 1
            elif is_image_file(name):
                yield name, location
            else:
                ignored += 1

    names, locations = _columns(images(), 2)
    return names, locations, ignored, hidden


def list_image_files(data: str | os.PathLike[str] | Sequence[str]) -> ImageFiles:
    """Lists the images under ``data``: a directory, or a list of directories and files.

    Images in a directory are named relative to it; an image file given directly is
    named by its file name. Two images with the same name are an error, since the
    output could not tell them apart.
    """
    if isinstance(data, str | os.PathLike) and is_manifest(str(data)):
        files = read_manifest(str(data))
    else:
        files = _list(data)
    # Arrow's pool (mimalloc) keeps the pages of the listing's copies (joined,
    # sorted, taken: 32 MB at the peak for 200k paths, of which 10 MB stay) for
    # allocations as large, which the rest of a run does not make: 200k paths
    # left the process 30 MB larger than 10k did, 6 MB after this.
    pa.default_memory_pool().release_unused()
    return files


def _list(data: str | os.PathLike[str] | Sequence[str]) -> ImageFiles:
    entries = [data] if isinstance(data, str | os.PathLike) else list(data)
    names: list[pa.Array] = []
    locations: list[pa.Array] = []
    ignored = hidden = 0
    for entry in map(str, entries):
        kind = storage.file_type(entry)
        if kind == "directory":
            found, where, n_ignored, n_hidden = _walk(entry)
            ignored, hidden = ignored + n_ignored, hidden + n_hidden
        elif kind == "file":
            name = PurePosixPath(entry).name
            if not is_image_file(name):
                raise LightlyTrainError(
                    _unsupported(f"File '{entry}' is not an image.")
                )
            found, where = _columns([(name, entry)], 2)
        else:
            raise LightlyTrainError(
                f"Data path '{entry}' does not exist. Pass an existing directory of "
                "images (or a URI prefix), or a list of directories and image files."
            )
        names.append(found)
        locations.append(where)
    if not sum(map(len, names)):
        raise LightlyTrainError(_unsupported(f"No images found in {entries}."))
    if ignored or hidden:
        logger.info(
            f"Ignored {ignored} files with other extensions and {hidden} hidden "
            "files or directories."
        )
    # Stable: of two equal names, the one listed first comes first.
    all_names = pa.concat_arrays(names)
    order = pc.sort_indices(all_names)
    sorted_names = all_names.take(order)
    sorted_locations = pa.concat_arrays(locations).take(order)
    twice = _repeated(sorted_names)
    if len(twice):
        i = int(twice[0])
        raise LightlyTrainError(
            f"Two images are both named '{sorted_names[i].as_py()}': "
            f"'{sorted_locations[i].as_py()}' and '{sorted_locations[i + 1].as_py()}'. "
            "Filenames in the output must be unique."
        )
    return ImageFiles(Names(sorted_names), Names(sorted_locations), ignored, hidden)


def _columns(rows: Iterable[tuple[str, ...]], width: int) -> list[pa.Array]:
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


def _repeated(names: pa.Array) -> np.ndarray:
    """Positions ``i`` of sorted ``names`` where ``names[i] == names[i + 1]``."""
    if len(names) < 2:
        return np.zeros(0, dtype=np.int64)
    same = pc.equal(names[1:], names[:-1]).to_numpy(zero_copy_only=False)
    return np.flatnonzero(same)


MANIFEST_EXTENSIONS = (".txt", ".parquet")


def is_manifest(data: str) -> bool:
    """A ``.txt`` or ``.parquet`` file given as ``data`` lists the images."""
    return (
        data.lower().endswith(MANIFEST_EXTENSIONS) and storage.file_type(data) == "file"
    )


def read_manifest(path: str) -> ImageFiles:
    """Reads a list of images: one path per line (``.txt``), or a ``path`` column
    (``.parquet``). Names are the entries as given; relative entries are found
    beside the manifest. Nothing is listed, so millions of entries are cheap.
    """
    raw = storage.read_bytes(path)
    if path.lower().endswith(".parquet"):
        table = pq.read_table(pa.BufferReader(raw))
        column = "path" if "path" in table.column_names else None
        if column is None and table.num_columns == 1:
            column = table.column_names[0]
        if column is None:
            raise LightlyTrainError(
                f"Manifest '{path}' needs a 'path' column; it has {table.column_names}."
            )
        entries = pc.drop_null(_utf8(table.column(column).combine_chunks(), path))
    else:
        text = _utf8(pa.array([raw], pa.large_binary()), path)
        lines = pc.list_flatten(pc.split_pattern_regex(text, r"\r\n|\r|\n"))
        entries = pc.utf8_trim_whitespace(lines)
    entries = entries.filter(pc.not_equal(entries, ""))
    if not len(entries):
        raise LightlyTrainError(f"Manifest '{path}' lists no images.")
    names = entries.take(pc.sort_indices(entries))
    twice = _repeated(names)
    if len(twice):
        dupes = pc.unique(names.take(pa.array(twice[:3]))).to_pylist()
        raise LightlyTrainError(f"Manifest '{path}' lists images twice: {dupes}.")
    paths = storage.locate_all(names, storage.parent(path))
    return ImageFiles(Names(names), Names(paths), num_ignored=0, num_hidden=0)


def _utf8(values: pa.Array, manifest: str) -> pa.Array:
    """``values`` (strings or bytes) as large strings; a manifest whose bytes are
    not UTF-8 is named, with its first such line, and the fix."""
    try:
        return values.cast(pa.large_string())
    except pa.ArrowInvalid:
        lines = b"\n".join(v for v in values.to_pylist() if v is not None)
        bad = next((i for i, line in enumerate(lines.splitlines(), 1)
                    if not _decodes(line)), None)  # fmt: skip
        raise LightlyTrainError(
            f"Manifest '{manifest}' is not UTF-8 text"
            + (f" (entry {bad})" if bad else "")
            + ". Save it as UTF-8, with file names that are UTF-8."
        ) from None


def _decodes(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


def _unsupported(message: str) -> str:
    exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    return f"{message} Supported extensions (any letter case): {exts}."
