"""The storage seam: its functions on local paths and on a real S3-compatible server
(moto), and a scan that keeps every other module from telling the two apart."""

from __future__ import annotations

import ast
import io
import os
from pathlib import Path

import pytest

import lightly_train
from lightly_train.data import storage
from lightly_train.data.publish import output_location

PACKAGE = Path(lightly_train.__file__).parent
# The storage room: the only modules that may tell a local path from a URI.
ROOM = {PACKAGE / "data" / "storage.py", PACKAGE / "data" / "publish.py"}


FORBIDDEN_MODULES = ("pyarrow.fs", "urllib.parse")
FORBIDDEN_NAMES = ("is_uri", "urlparse", "from_uri")


def seam_breaches(source: str) -> list[str]:
    """What in a module's source tells a local path from a URI by itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += [f"imports {m}" for m in _imported(node)
                      if m.startswith(FORBIDDEN_MODULES)
                      or m.rsplit(".", 1)[-1] in FORBIDDEN_NAMES]  # fmt: skip
        elif isinstance(node, ast.Attribute) and node.attr in (*FORBIDDEN_NAMES, "fs"):
            found.append(f"uses .{node.attr}")  # storage.is_uri, pa.fs
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"uses {node.id}")
        elif isinstance(node, ast.Compare) and any(
            isinstance(c, ast.Constant) and "://" in str(c.value)
            for c in [node.left, *node.comparators]
        ):
            found.append("compares with '://'")
    return found


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]


def test_no_module_outside_the_storage_room_tells_local_from_remote() -> None:
    breaches = {
        str(path.relative_to(PACKAGE.parent)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in ROOM
        and (found := seam_breaches(path.read_text(encoding="utf-8")))
    }
    assert breaches == {}


@pytest.mark.parametrize(
    "source",
    [
        "from lightly_train.data.storage import is_uri",
        "from lightly_train.data import storage\nstorage.is_uri(x)",
        "import pyarrow.fs as pafs",
        "from pyarrow import fs",
        "from urllib.parse import urlparse",
        "import urllib.parse",
        "ok = '://' in out",
        "import pyarrow as pa\npa.fs.FileSystem.from_uri(x)",
    ],
)
def test_the_scan_finds_a_breach(source: str) -> None:
    assert seam_breaches(source)


def test_the_scan_lets_storage_calls_and_uri_docs_pass() -> None:
    assert not seam_breaches(
        '"""Reads s3://bucket/key."""\nfrom lightly_train.data import storage\n'
        "storage.read_bytes(x)\nimport pyarrow as pa\npa.table({})"
    )


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty directory, local or a fresh prefix on the S3 server."""
    if request.param == "local":
        return str(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/storage/{tmp_path.name}"


def write(root: str, names: list[str]) -> None:
    for name in names:
        storage.make_parents(storage.join(root, name))
        storage.write_bytes(storage.join(root, name), name.encode())


def test_walk_entries_and_reads(root: str) -> None:
    write(root, ["a.png", "sub/b.png", "sub/deeper/c.txt"])
    walked = dict(storage.walk(root))
    assert walked == {n: storage.join(root, n)
                      for n in ["a.png", "sub/b.png", "sub/deeper/c.txt"]}  # fmt: skip
    assert storage.read_bytes(walked["sub/b.png"]) == b"sub/b.png"
    # Directly in a local directory; every object under a remote prefix.
    expected = ["a.png", "sub"] if storage.local_path(root) else list(walked)
    assert sorted(storage.entries(root)) == sorted(expected)
    assert storage.file_type(storage.join(root, "sub")) == "directory"
    src = storage.source(walked["a.png"])
    got = src.read() if isinstance(src, io.BytesIO) else Path(src).read_bytes()
    assert got == b"a.png"
    assert storage.parent(walked["sub/b.png"]) == storage.join(root, "sub")
    assert storage.locate("sub/b.png", root) == walked["sub/b.png"]


def test_source_reads_a_local_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "big.ckpt"
    path.write_bytes(b"weights")
    assert storage.source(str(path)) == str(path)  # no copy into memory


def test_walk_skips_hidden_directories_and_link_loops(tmp_path: Path) -> None:
    write(str(tmp_path), ["a.png", ".git/objects/x", "sub/.hidden.png"])
    os.symlink(tmp_path, tmp_path / "loop")
    assert sorted(storage.walk(str(tmp_path))) == [
        (".git", str(tmp_path / ".git")),  # one entry, not entered
        ("a.png", str(tmp_path / "a.png")),
        ("sub/.hidden.png", str(tmp_path / "sub" / ".hidden.png")),
    ]


def test_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path, tmp_path / "link")
    assert storage.canonical("link/x.png") == str(tmp_path.resolve() / "x.png")
    assert storage.canonical("s3://b/x #1?.png") == "s3://b/x #1?.png"
    assert storage.parent("s3://b/dir/list.txt") == "s3://b/dir"
    assert storage.parent("dir/list.txt") == "dir"
    assert storage.locate("/abs/a.png", "s3://b/dir") == "/abs/a.png"
    assert storage.locate("s3://c/a.png", "/data") == "s3://c/a.png"
    assert storage.locate("a.png", "s3://b/dir") == "s3://b/dir/a.png"
    assert storage.local_path("s3://b/x") is None
    storage.make_parents("s3://b/new/x")  # a remote object needs no directory
    storage.make_parents(str(tmp_path / "new" / "x"))
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "x").exists()


@pytest.mark.parametrize("directory", [False, True])
def test_publish_appears_only_when_complete(root: str, directory: bool) -> None:
    out = storage.join(root, "out")
    with output_location(out, directory) as target:
        if directory:
            storage.make_parents(storage.join(target, "part-0.parquet"))
            storage.write_bytes(storage.join(target, "part-0.parquet"), b"0")
        else:
            Path(target).write_bytes(b"file")  # a local temp file, even for S3
        assert storage.file_type(out) == "missing"
    assert storage.file_type(out) == ("directory" if directory else "file")
    got = storage.join(out, "part-0.parquet") if directory else out
    assert storage.read_bytes(got) == (b"0" if directory else b"file")
    # A failed write leaves the published output and nothing else.
    with pytest.raises(RuntimeError), output_location(out, directory) as target:
        raise RuntimeError("writer failed")
    assert storage.read_bytes(got) == (b"0" if directory else b"file")
    assert [n.split("/")[0] for n in storage.entries(root)] == ["out"]
