import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_train._io import check_out_dir, check_out_file, check_writable
from lightly_train.data.publish import _umask, atomic_dir, atomic_path
from lightly_train.errors import LightlyTrainError
from tests.images import write_image


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


def test_an_out_that_cannot_be_created_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    (tmp_path / "a_file").write_text("mine")
    below_a_file = tmp_path / "a_file" / "deeper" / "e.pth"
    with pytest.raises(LightlyTrainError) as ex:
        check_out_file(str(below_a_file), False, "embeddings.pth")
    assert str(ex.value) == (
        f"Output '{below_a_file}' cannot be written: '{tmp_path / 'a_file'}' is a "
        "file, not a directory. Choose an out in a directory you can write to."
    )
    # procfs takes no new files (whoever runs this, root included).
    with pytest.raises(LightlyTrainError, match="no file can be created in '/proc'"):
        check_out_dir("/proc/embeddings", False, "part-*.parquet")
    with pytest.raises(LightlyTrainError, match="Output '/proc/run' cannot be"):
        check_writable("/proc/run", directory=True)
    check_writable(tmp_path / "new" / "dirs" / "e.pth")  # creatable: no error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no probe left


@pytest.mark.parametrize("command", ["embed", "train"])
def test_cli_out_below_a_file_is_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "a_file").write_text("mine")
    write_image(tmp_path / "data" / "0.png", "RGB", size=(8, 8), seed=0)
    out = tmp_path / "a_file" / "out"
    args = {"embed": ["checkpoint=c.ckpt"], "train": ["model=torchvision/resnet18"]}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lightly-train")), command, f"out={out}",
         f"data={tmp_path / 'data'}", *args[command]],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: Output '{out}' cannot be written: '{tmp_path / 'a_file'}' is a file, "
        "not a directory. Choose an out in a directory you can write to."
    ]
    assert (tmp_path / "a_file").read_text() == "mine"
