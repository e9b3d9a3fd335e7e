"""Find, filter and sort the image files under ``data``.

Filenames are relative to the directory they were found under, with ``/`` separators,
and the list is sorted by filename: this order is the order of every output.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from lightly_train.data import storage
from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff",
    ".webp",
)  # fmt: skip


@dataclass(frozen=True)
class ImageFiles:
    """Sorted image files: ``filenames[i]`` is the output name of ``paths[i]``."""

    filenames: list[str]
    paths: list[str]
    num_ignored: int  # files with other extensions
    num_hidden: int  # hidden files and hidden directories

    def __len__(self) -> int:
        return len(self.filenames)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(root: str) -> tuple[dict[str, str], int, int]:
    """``{filename: location}`` of the images under a directory or remote prefix,
    plus the counts of other files and of hidden entries (a hidden local directory
    counts once: it is not entered)."""
    found: dict[str, str] = {}
    ignored = hidden = 0
    for name, location in storage.walk(root):
        if name.startswith(".") or "/." in name:
            hidden += 1
        elif is_image_file(name):
            found[name] = location
        else:
            ignored += 1
    return found, ignored, hidden


def list_image_files(data: str | os.PathLike[str] | Sequence[str]) -> ImageFiles:
    """Lists the images under ``data``: a directory, or a list of directories and files.

    Images in a directory are named relative to it; an image file given directly is
    named by its file name. Two images with the same name are an error, since the
    output could not tell them apart.
    """
    if isinstance(data, str | os.PathLike) and is_manifest(str(data)):
        return read_manifest(str(data))
    entries = [data] if isinstance(data, str | os.PathLike) else list(data)
    found: dict[str, str] = {}
    ignored = hidden = 0
    for entry in map(str, entries):
        kind = storage.file_type(entry)
        if kind == "directory":
            files, n_ignored, n_hidden = _walk(entry)
            ignored, hidden = ignored + n_ignored, hidden + n_hidden
        elif kind == "file":
            name = PurePosixPath(entry).name
            if not is_image_file(name):
                raise LightlyTrainError(
                    _unsupported(f"File '{entry}' is not an image.")
                )
            files = {name: entry}
        else:
            raise LightlyTrainError(
                f"Data path '{entry}' does not exist. Pass an existing directory of "
                "images (or a URI prefix), or a list of directories and image files."
            )
        for name, file in files.items():
            if name in found:
                raise LightlyTrainError(
                    f"Two images are both named '{name}': '{found[name]}' and "
                    f"'{file}'. Filenames in the output must be unique."
                )
            found[name] = file
    if not found:
        raise LightlyTrainError(_unsupported(f"No images found in {entries}."))
    if ignored or hidden:
        logger.info(
            f"Ignored {ignored} files with other extensions and {hidden} hidden "
            "files or directories."
        )
    filenames = sorted(found)
    return ImageFiles(filenames, [found[f] for f in filenames], ignored, hidden)


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
        entries = [str(e) for e in table.column(column).to_pylist() if e]
    else:
        lines = raw.decode("utf-8").splitlines()
        entries = [line.strip() for line in lines if line.strip()]
    if not entries:
        raise LightlyTrainError(f"Manifest '{path}' lists no images.")
    names = sorted(set(entries))
    if len(names) != len(entries):
        dupes = sorted(e for e, n in Counter(entries).items() if n > 1)[:3]
        raise LightlyTrainError(f"Manifest '{path}' lists images twice: {dupes}.")
    beside = storage.parent(path)
    paths = [storage.locate(n, beside) for n in names]
    return ImageFiles(names, paths, num_ignored=0, num_hidden=0)


def _unsupported(message: str) -> str:
    exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    return f"{message} Supported extensions (any letter case): {exts}."
