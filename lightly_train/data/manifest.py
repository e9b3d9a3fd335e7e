"""``data`` given as a manifest: a ``.txt`` or ``.parquet`` file that lists the
images, read with Arrow (no listing, no Python object per entry)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lightly_train.data import storage
from lightly_train.data.names import ImageFiles, Names, repeated
from lightly_train.errors import LightlyTrainError

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
    twice = repeated(names)
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
