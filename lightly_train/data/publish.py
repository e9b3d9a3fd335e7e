"""The one atomic publish: an output, local or remote, a file or a directory,
appears only when complete.

A local output is written to a temp file or directory beside it and renamed; a
remote one is written locally (a file) or under a temporary prefix (a directory)
and uploaded or moved into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from lightly_train.data import storage


@contextmanager
def output_location(out: str, directory: bool) -> Iterator[str]:
    """Where to write ``out`` (a path or URI, a file or a directory) so that it
    appears only when complete: a temp file or directory, renamed or uploaded."""
    if storage.is_uri(out):
        with remote_output(out, directory) as location:
            yield location
        return
    with atomic_dir(out) if directory else atomic_path(out) as tmp:
        yield str(tmp)


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


@contextmanager
def remote_output(uri: str, directory: bool) -> Iterator[str]:
    """Yields where to write a remote ``uri``; publishes it if the block succeeds.

    A file is written locally and uploaded (an S3 object appears only when its
    upload completes). A directory is written under a temporary prefix beside it and
    its files are moved into place; on an error the temporary prefix is deleted.
    """
    fs, path = storage.resolve(uri)
    if not directory:
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "out")
            yield local
            with open(local, "rb") as src, fs.open_output_stream(path) as dst:
                shutil.copyfileobj(src, dst, length=16 * 1024**2)  # streamed
        return
    tmp_path = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    scheme = storage.split_uri(uri)[0]
    try:
        yield f"{scheme}://{tmp_path}"
        # An object store has no atomic rename of a prefix. The manifest, which
        # says the directory is complete, goes first and comes back last: at any
        # moment in between, a reader sees no manifest and an incomplete output.
        names = storage.list_files(f"{scheme}://{tmp_path}")
        if fs.get_file_info(f"{path}/{storage.MANIFEST}").type == pafs.FileType.File:
            fs.delete_file(f"{path}/{storage.MANIFEST}")
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)  # overwrite: checked before any work
        for name in sorted(names, key=lambda n: n == storage.MANIFEST):
            fs.move(f"{tmp_path}/{name}", f"{path}/{name}")
    finally:
        if fs.get_file_info(tmp_path).type == pafs.FileType.Directory:
            fs.delete_dir(tmp_path)


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
