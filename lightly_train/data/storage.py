"""Local paths and remote URIs (``s3://``, ``gs://``, any pyarrow filesystem) alike.

The only room that tells the two apart (with ``publish.py``, the atomic output):
every other module reads, lists and locates through these functions.

Credentials come from the standard environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for S3-compatible servers, ...), read
by pyarrow. On a cluster, set them for every node (e.g. the job's runtime_env).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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


def source(location: str) -> str | io.BytesIO:
    """What a reader such as ``torch.load`` takes: a local file's path, read by
    path (a large checkpoint is never copied into memory whole), or a remote
    object's bytes."""
    return io.BytesIO(read_bytes(location)) if is_uri(location) else location


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


def entries(location: str) -> list[str]:
    """What a directory holds: the names directly in a local directory (files and
    directories), every object's name relative to a remote prefix (an object store
    has no directories)."""
    if is_uri(location):
        return list_files(location)
    return os.listdir(location)


def walk(location: str) -> Iterator[tuple[str, str]]:
    """``(name, location)`` of each file under a directory or remote prefix, the
    name relative to it with ``/`` separators.

    A local hidden directory (``.git``, ``.cache``) is yielded as one entry and not
    entered: it holds no images and may hold many files. Symlinked directories are
    not entered, so a link loop cannot recurse. A remote prefix yields every object.
    """
    if is_uri(location):
        for name in list_files(location):
            yield name, join(location, name)
        return
    # One scandir per directory and string joins, no stat or Path per file: 1M
    # files in 2.2 s, 9.7 s with them (benchmarks/list_files.py).
    stack = [("", location)]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as found:
            for entry in found:
                name = entry.name
                if not name.startswith(".") and _is_dir(entry):
                    if not entry.is_symlink():
                        stack.append((f"{prefix}{name}/", entry.path))
                else:
                    yield prefix + name, entry.path


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """``entry.is_dir()``, False for a link that cannot be followed (a loop raises
    ELOOP): it is then listed like a file, and its read names the problem."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def local_path(location: str) -> Path | None:
    """The local path of ``location``; None for a remote URI."""
    return None if is_uri(location) else Path(location)


def canonical(location: str) -> str:
    """A local path made absolute, symlinks resolved; a URI as it is."""
    return location if is_uri(location) else str(Path(location).resolve())


def parent(location: str) -> str:
    """The directory (or prefix) that holds ``location``."""
    if is_uri(location):
        return location.rsplit("/", 1)[0]
    return str(Path(location).parent)


def locate(name: str, directory: str) -> str:
    """``name`` as it is if absolute (a URI or an absolute path), else its location
    in ``directory``."""
    return name if is_uri(name) or Path(name).is_absolute() else join(directory, name)


def locate_all(names: pa.Array, directory: str) -> pa.Array:
    """``locate`` for an Arrow array of names, with no Python string per name (a
    relative name's location is not normalised: ``dir/./a.png`` stays so)."""
    absolute = pc.or_(pc.match_substring(names, "://"), pc.starts_with(names, "/"))
    prefix = f"{directory.rstrip('/')}/" if is_uri(directory) else f"{Path(directory)}/"
    empty = pa.scalar("", names.type)  # the separator
    joined = pc.binary_join_element_wise(pa.scalar(prefix, names.type), names, empty)
    return pc.if_else(absolute, names, joined)


def make_parents(location: str) -> None:
    """Creates the directories that will hold a local file (a remote object needs
    none)."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)


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


def write_parquet(table: pa.Table, location: str, **options: Any) -> None:
    """Writes ``table`` (``options`` go to ``pyarrow.parquet.write_table``); the
    file appears only complete (an object store's upload does; a local file is
    written beside it and renamed)."""
    if is_uri(location):
        with open_output(location) as stream:
            pq.write_table(table, stream, **options)
        return
    tmp = f"{location}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open_output(tmp) as stream:
            pq.write_table(table, stream, **options)
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
    """One parquet file, read in the calling thread. A merge reads many small
    ones: merging 49 fragments (100k x 576 floats) peaked at +122-134 MB
    through Arrow's dataset reader and its thread pools, +80-98 MB this way."""
    fs, path = _fs_path(location)
    with fs.open_input_file(path) as f:
        return pq.ParquetFile(f).read(use_threads=False)


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
