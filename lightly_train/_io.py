"""File output: ``out`` is checked before any work and appears only when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightly_train.errors import LightlyTrainError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temp path beside ``path``; renames it to ``path`` if the block succeeds.

    On an error the temp file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    # mkstemp makes the file owner-only; give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_out_file(out: Path, overwrite: bool, example: str) -> Path:
    """Fails before any work if ``out`` cannot be written; creates its parents.

    ``example`` is a file name suggested when ``out`` is a directory.
    """
    if out.is_dir():
        raise LightlyTrainError(
            f"Output '{out}' is a directory. Pass a file path, e.g. "
            f"out={out / example}."
        )
    if out.exists() and not overwrite:
        raise LightlyTrainError(
            f"Output '{out}' already exists. Pass overwrite=True to replace it, or "
            "choose another out."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out
