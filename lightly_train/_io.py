"""File output: ``out`` is checked before any work and appears only when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from lightly_train.data import storage
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
        try:
            os.replace(tmp, path)
        except BaseException:
            if old.exists() and not path.exists():
                os.replace(old, path)  # the former output stays
            raise
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (setting
    it, even for a moment, races with files other threads create)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o077)  # the safe side, for the moment it is set
        os.umask(umask)
    return umask


_UMASK_LOCK = threading.Lock()


def check_out_dir(out: str, overwrite: bool, pattern: str) -> str:
    """Like ``check_out_file`` for an output directory (or prefix) of ``pattern``
    files. With ``overwrite`` an existing one is replaced only if it holds nothing
    but such files, so a mistyped ``out`` never deletes a user's directory.
    """
    kind = storage.file_type(out)
    if kind == "file":
        raise LightlyTrainError(
            f"Output '{out}' is a file; this format writes a directory of "
            f"{pattern} files. Pass a directory path."
        )
    names = _names_in(out) if kind == "directory" else []
    if names and not overwrite:
        raise LightlyTrainError(
            f"Output '{out}' already exists. Pass overwrite=True to replace it, "
            "or choose another out."
        )
    foreign = [
        name
        for name in names
        if not PurePosixPath(name).match(pattern) and name != storage.MANIFEST
    ]
    if foreign:
        raise LightlyTrainError(
            f"Output '{out}' holds files this tool did not write ({foreign[:3]}); "
            "refusing to replace it even with overwrite=True. Choose another out."
        )
    if not storage.is_uri(out):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    return out


def _names_in(directory: str) -> list[str]:
    if storage.is_uri(directory):
        return storage.list_files(directory)
    return [p.name for p in Path(directory).iterdir()]


def check_out_file(out: str, overwrite: bool, example: str) -> str:
    """Fails before any work if ``out`` (a path or URI) cannot be written; creates
    the parents of a local path. ``example`` is a file name suggested when ``out``
    is a directory.
    """
    kind = storage.file_type(out)
    if kind == "directory":
        raise LightlyTrainError(
            f"Output '{out}' is a directory. Pass a file path, e.g. "
            f"out={storage.join(out, example)}."
        )
    if kind == "file" and not overwrite:
        raise LightlyTrainError(
            f"Output '{out}' already exists. Pass overwrite=True to replace it, or "
            "choose another out."
        )
    if not storage.is_uri(out):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def output_location(out: str, directory: bool) -> Iterator[str]:
    """Where to write ``out`` (a path or URI, a file or a directory) so that it
    appears only when complete: a temp file or directory, renamed or uploaded."""
    if storage.is_uri(out):
        with storage.remote_output(out, directory) as location:
            yield location
        return
    with atomic_dir(out) if directory else atomic_path(out) as tmp:
        yield str(tmp)
