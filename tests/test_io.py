import os
from pathlib import Path

import pytest

from lightly_train._io import check_out_file
from lightly_train.data.publish import _umask, atomic_dir, atomic_path
from lightly_train.errors import LightlyTrainError


def test_atomic_path_renames_on_success_with_default_mode(tmp_path: Path) -> None:
    out = tmp_path / "new" / "file.bin"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and not out.exists()
        tmp.write_bytes(b"data")
    assert out.read_bytes() == b"data"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in out.parent.iterdir()] == ["file.bin"]


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_check_out_file(tmp_path: Path) -> None:
    with pytest.raises(LightlyTrainError, match="directory.*out=.*model.pt"):
        check_out_file(tmp_path, overwrite=True, example="model.pt")
    (tmp_path / "x").write_text("keep")
    with pytest.raises(LightlyTrainError, match="already exists"):
        check_out_file(tmp_path / "x", overwrite=False, example="e.pth")
    assert check_out_file(tmp_path / "x", overwrite=True, example="e.pth")
    assert check_out_file(
        tmp_path / "a" / "b", overwrite=False, example="e"
    ).parent.is_dir()


def test_atomic_dir_keeps_the_former_output_if_the_last_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    (out / "part-00000.parquet").write_text("former")
    replace = os.replace
    calls: list[str] = []

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(str(src))
        if len(calls) == 2:  # the new directory into place
            raise OSError("disk full")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"), atomic_dir(out) as tmp:
        (tmp / "part-00000.parquet").write_text("new")
    assert (out / "part-00000.parquet").read_text() == "former"
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]  # no temp left


def test_umask_is_read_without_being_set(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("umask was set"))
        assert _umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(previous)
