"""Find, filter and sort the image files under ``data``.

Filenames are relative to the directory they were found under, with ``/`` separators,
and the list is sorted by filename: this order is the order of every output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp",
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


def _walk(root: Path) -> tuple[dict[str, str], int, int]:
    found: dict[str, str] = {}
    ignored = hidden = 0
    for dirpath, dirnames, names in os.walk(root):
        # Hidden directories are skipped whole (not walked) and count as one entry.
        hidden += sum(d.startswith(".") for d in dirnames)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                hidden += 1
            elif is_image_file(name):
                path = Path(dirpath) / name
                found[path.relative_to(root).as_posix()] = str(path)
            else:
                ignored += 1
    return found, ignored, hidden


def list_image_files(data: str | os.PathLike[str] | Sequence[str]) -> ImageFiles:
    """Lists the images under ``data``: a directory, or a list of directories and files.

    Images in a directory are named relative to it; an image file given directly is
    named by its file name. Two images with the same name are an error, since the
    output could not tell them apart.
    """
    entries = [data] if isinstance(data, str | os.PathLike) else list(data)
    found: dict[str, str] = {}
    ignored = hidden = 0
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            files, n_ignored, n_hidden = _walk(path)
            ignored, hidden = ignored + n_ignored, hidden + n_hidden
        elif path.is_file():
            if not is_image_file(path.name):
                raise LightlyTrainError(_unsupported(f"File '{path}' is not an image."))
            files = {path.name: str(path)}
        else:
            raise LightlyTrainError(
                f"Data path '{path}' does not exist. Pass an existing directory of "
                "images, or a list of directories and image files."
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


def _unsupported(message: str) -> str:
    exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    return f"{message} Supported extensions (any letter case): {exts}."
