"""File output: ``out`` is checked before any work and appears only when complete."""

from __future__ import annotations

import os
import shutil
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
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temp directory beside ``path``; it replaces ``path`` if the block
    succeeds. On an error it is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    )
    os.chmod(tmp, 0o777 & ~_umask())
    old = path.parent / f"{tmp.name}.old"
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)  # directories cannot be replaced in one rename
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_out_dir(out: Path, overwrite: bool, pattern: str) -> Path:
    """Like ``check_out_file`` for an output directory of ``pattern`` files.

    With ``overwrite`` an existing directory is replaced only if it holds nothing
    but such files, so a mistyped ``out`` never deletes a user's directory.
    """
    if out.exists() and not out.is_dir():
        raise LightlyTrainError(
            f"Output '{out}' is a file; this format writes a directory of "
            f"{pattern} files. Pass a directory path."
        )
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise LightlyTrainError(
                f"Output '{out}' already exists. Pass overwrite=True to replace it, "
                "or choose another out."
            )
        foreign = [p.name for p in out.iterdir() if not p.match(pattern)]
        if foreign:
            raise LightlyTrainError(
                f"Output '{out}' holds files this tool did not write ({foreign[:3]}); "
                "refusing to replace it even with overwrite=True. Choose another out."
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


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
