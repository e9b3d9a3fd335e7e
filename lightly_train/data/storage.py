"""Local paths and remote URIs (``s3://``, ``gs://``, any pyarrow filesystem) alike.

Credentials come from the standard environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for S3-compatible servers, ...), read
by pyarrow. On a cluster, set them for every node (e.g. the job's runtime_env).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Written last into an output directory: its presence says the directory is
# complete. Parquet readers skip it (its name starts with "_").
MANIFEST = "_manifest.json"


def is_uri(location: str | os.PathLike[str]) -> bool:
    return "://" in str(location)


@lru_cache(maxsize=16)
def _filesystem(root: str) -> pafs.FileSystem:
    # One client per bucket and process: creating an S3 client is slow.
    return pafs.FileSystem.from_uri(root)[0]


def split_uri(uri: str) -> tuple[str, str, str]:
    """``"s3://bucket/a/b#1?.png"`` -> (``"s3"``, ``"bucket"``, ``"a/b#1?.png"``).

    Everything after the bucket is the key: object names may hold ``#`` and
    ``?``, which a URL parser would take for a fragment and a query.
    """
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """``"s3://bucket/key"`` -> (filesystem, ``"bucket/key"``)."""
    scheme, bucket, key = split_uri(uri)
    fs = _filesystem(f"{scheme}://{bucket}")
    return fs, f"{bucket}/{key}".rstrip("/")


def join(location: str, name: str) -> str:
    return (
        f"{location.rstrip('/')}/{name}"
        if is_uri(location)
        else str(Path(location) / name)
    )


def read_bytes(location: str) -> bytes:
    if not is_uri(location):
        with open(location, "rb") as f:
            return f.read()
    fs, path = resolve(location)
    with fs.open_input_file(path) as f:
        return f.readall()


def file_type(location: str) -> str:
    """``"file"``, ``"directory"`` or ``"missing"``."""
    if not is_uri(location):
        path = Path(location)
        return "file" if path.is_file() else "directory" if path.is_dir() else "missing"
    fs, path = resolve(location)
    kind = fs.get_file_info(path).type
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "directory"}.get(
        kind, "missing"
    )


def list_files(location: str) -> list[str]:
    """Every file under a directory or remote prefix, relative to it, with ``/``
    separators; none if it does not exist."""
    fs, root = _fs_path(location)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return [
        info.path[len(root) + 1 :]
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    ]


def local_path(location: str) -> Path | None:
    """The local path of ``location``; None for a remote URI."""
    return None if is_uri(location) else Path(location)


def beside(location: str, name: str) -> str:
    """The location of ``name`` in the directory (or prefix) that holds
    ``location``: ``beside("s3://b/x/emb", ".emb.work")`` is ``"s3://b/x/.emb.work"``."""
    if is_uri(location):
        return f"{location.rstrip('/').rsplit('/', 1)[0]}/{name}"
    return str(Path(location).absolute().parent / name)


def base_name(location: str) -> str:
    return (
        location.rstrip("/").rsplit("/", 1)[-1]
        if is_uri(location)
        else Path(location).name
    )


def write_bytes(location: str, data: bytes) -> None:
    if not is_uri(location):
        Path(location).write_bytes(data)
        return
    fs, path = resolve(location)
    with fs.open_output_stream(path) as f:
        f.write(data)


@contextmanager
def remote_output(uri: str, directory: bool) -> Iterator[str]:
    """Yields where to write a remote ``uri``; publishes it if the block succeeds.

    A file is written locally and uploaded (an S3 object appears only when its
    upload completes). A directory is written under a temporary prefix beside it and
    its files are moved into place; on an error the temporary prefix is deleted.
    """
    fs, path = resolve(uri)
    if not directory:
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "out")
            yield local
            with open(local, "rb") as src, fs.open_output_stream(path) as dst:
                shutil.copyfileobj(src, dst, length=16 * 1024**2)  # streamed
        return
    tmp_path = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    scheme = split_uri(uri)[0]
    try:
        yield f"{scheme}://{tmp_path}"
        # An object store has no atomic rename of a prefix. The manifest, which
        # says the directory is complete, goes first and comes back last: at any
        # moment in between, a reader sees no manifest and an incomplete output.
        names = list_files(f"{scheme}://{tmp_path}")
        if fs.get_file_info(f"{path}/{MANIFEST}").type == pafs.FileType.File:
            fs.delete_file(f"{path}/{MANIFEST}")
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)  # overwrite: checked before any work
        for name in sorted(names, key=lambda n: n == MANIFEST):
            fs.move(f"{tmp_path}/{name}", f"{path}/{name}")
    finally:
        if fs.get_file_info(tmp_path).type == pafs.FileType.Directory:
            fs.delete_dir(tmp_path)


def _fs_path(location: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a local path or a URI alike."""
    if is_uri(location):
        return resolve(location)
    return pafs.LocalFileSystem(), os.path.abspath(location)


def stamp(location: str) -> list[Any]:
    """Which version of the file at ``location`` this is: its absolute path or URI,
    size and modification time (ns). Cheap: no byte of it is read."""
    fs, path = _fs_path(location)
    info = fs.get_file_info(path)
    return [location if is_uri(location) else path, info.size, info.mtime_ns]


@contextmanager
def open_output(location: str) -> Iterator[pafs.NativeFile]:
    """A writable stream to ``location``; local parents are created."""
    fs, path = _fs_path(location)
    if not is_uri(location):
        fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as stream:
        yield stream


def write_parquet(table: pa.Table, location: str) -> None:
    """Writes ``table``; the file appears only complete (an object store's upload
    does; a local file is written beside it and renamed)."""
    if is_uri(location):
        with open_output(location) as stream:
            pq.write_table(table, stream)
        return
    tmp = f"{location}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open_output(tmp) as stream:
            pq.write_table(table, stream)
        os.replace(tmp, location)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_parquet_schema(location: str) -> pa.Schema:
    """A parquet file's schema, with its key-value metadata (the footer only)."""
    fs, path = _fs_path(location)
    with fs.open_input_file(path) as f:
        return pq.read_schema(f)


def read_parquet(location: str) -> pa.Table:
    fs, path = _fs_path(location)
    return pq.read_table(path, filesystem=fs)


def list_names(location: str) -> list[str]:
    """Names of the files directly in a directory (or under a prefix); none if it
    does not exist."""
    fs, path = _fs_path(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [i.base_name for i in infos if i.type == pafs.FileType.File]


def remove_tree(location: str) -> None:
    """Deletes a directory (or prefix) and everything in it, if it exists."""
    fs, path = _fs_path(location)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
