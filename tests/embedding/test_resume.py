"""Resumable ``embed``: the real command interrupted by a signal past 30%, then
resumed; and the work directory's checks without Ray."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightly_train.checkpoint import create_checkpoint
from lightly_train.embedding import resume
from lightly_train.embedding.resume import WorkState, open_work, work_dir
from lightly_train.embedding.shards import scan_fragments
from lightly_train.errors import LightlyTrainError
from tests.images import write_image, write_not_an_image

EXE = str(Path(sys.executable).with_name("lightly-train"))
NUM_IMAGES = 1500  # and one that cannot be decoded
ARGS = ["image_size=96", "batch_size=8", "shard_size=600"]  # parquet: 3 parts


def command(out: Path, data: Path, ckpt: Path, *extra: str) -> list[str]:
    return [EXE, "embed", f"out={out}", f"data={data}", f"checkpoint={ckpt}", *ARGS,
            *extra]  # fmt: skip


def environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Images, a checkpoint, and the outputs of uninterrupted runs (``e.csv``,
    ``e.parquet``) in a directory."""
    root = tmp_path_factory.mktemp("resume")
    data = root / "imgs"
    for i in range(NUM_IMAGES):
        write_image(data / f"{i:04d}.png", "RGB", size=(40, 30), seed=i)
    write_not_an_image(data / "0100_broken.jpg")
    ckpt = create_checkpoint(root / "c.ckpt", model="torchvision/resnet18",
                             image_size=(96, 96))  # fmt: skip
    reference = root / "reference"
    for fmt in ("csv", "parquet"):
        subprocess.run(command(reference / f"e.{fmt}", data, ckpt, f"format={fmt}"),
                       check=True, env=environ(), capture_output=True,
                       timeout=400)  # fmt: skip
    return data, ckpt, reference


def interrupt_past(fraction: float, cmd: list[str], signum: int) -> tuple[int, str]:
    """Runs ``cmd``, sends ``signum`` once its progress line passes ``fraction``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=environ())  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        done = re.search(r"Embedded (\d+)/(\d+) images", line)
        if done and int(done[1]) >= fraction * int(done[2]):
            proc.send_signal(signum)
            break
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(lines) + rest


def files_of(out: Path) -> dict[str, bytes]:
    """An output's bytes: the file's, or each file's of a directory."""
    if out.is_file():
        return {"": out.read_bytes()}
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize(
    ("signum", "fmt"), [(signal.SIGINT, "csv"), (signal.SIGTERM, "parquet")]
)
def test_interrupted_embed_resumes_to_the_same_output(
    tmp_path: Path, job: tuple[Path, Path, Path], signum: int, fmt: str
) -> None:
    data, ckpt, references = job
    out, reference = tmp_path / f"e.{fmt}", references / f"e.{fmt}"
    code, output = interrupt_past(
        0.3, command(out, data, ckpt, f"format={fmt}"), signum
    )
    assert code == 130, output
    work = Path(work_dir(str(out), sharded=fmt == "parquet"))
    assert "resume_interrupted=True" in output and str(work) in output
    # Nothing but the work directory beside the output; no output yet.
    assert [p.name for p in tmp_path.iterdir()] == [work.name]
    saved = (
        int(scan_fragments(str(work), NUM_IMAGES + 1)[0].sum())
        if fmt == "parquet"
        else int(np.load(work / "done.npy").sum())
    )
    assert 0.3 * NUM_IMAGES <= saved < NUM_IMAGES + 1

    # Without resume_interrupted the leftover run is named, with both choices.
    again = subprocess.run(command(out, data, ckpt, f"format={fmt}"),
                           capture_output=True, text=True, env=environ(),
                           timeout=400)  # fmt: skip
    assert again.returncode == 2
    assert str(work) in again.stderr and "resume_interrupted=True" in again.stderr
    assert "overwrite=True" in again.stderr

    resumed = subprocess.run(command(out, data, ckpt, f"format={fmt}",
                                     "resume_interrupted=true"),
                             capture_output=True, text=True, env=environ(),
                             timeout=400)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    total = NUM_IMAGES + 1
    expected = f"Resuming: {saved} of {total} images are done; embedding the other "
    assert f"{expected}{total - saved}." in resumed.stderr
    assert files_of(out) == files_of(reference)
    failed = Path(f"{out}.failed.csv").read_text()
    assert failed == Path(f"{reference}.failed.csv").read_text()
    assert "0100_broken.jpg" in failed
    assert not work.exists()


def fingerprint(**changes: object) -> dict[str, object]:
    base = {"version": 1, "checkpoint": "abc", "model": None, "image_size": [96, 96],
            "precision": "32-true", "jpeg_decode": "auto", "num_files": 4,
            "files": "def"}  # fmt: skip
    return {**base, **changes}


def test_a_resume_with_other_arguments_or_data_is_refused(tmp_path: Path) -> None:
    out = str(tmp_path / "e.pth")
    open_work(out, fingerprint(), resume=False, overwrite=False)
    for changes, named in [({"image_size": [64, 64]}, "image_size"),
                           ({"files": "xyz", "num_files": 5}, "files, num_files"),
                           ({"checkpoint": "other"}, "checkpoint")]:  # fmt: skip
        with pytest.raises(LightlyTrainError, match=f"with other {named}\\. Resume"):
            open_work(out, fingerprint(**changes), resume=True, overwrite=False)
    with pytest.raises(LightlyTrainError, match="no interrupted embed"):
        open_work(str(tmp_path / "x.pth"), fingerprint(), resume=True, overwrite=False)
    with pytest.raises(LightlyTrainError, match="either resume_interrupted"):
        open_work(out, fingerprint(), resume=True, overwrite=True)


def test_progress_is_saved_while_rows_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "e.pth")
    state = open_work(out, fingerprint(), resume=False, overwrite=False)
    state.vectors_for(3)[[0, 2]] = [[1, 2, 3], [4, 5, 6]]
    state.add(np.array([0, 2]), {2: "OSError: bad"})  # not yet due: nothing saved
    assert WorkState(str(state.work), 4).saved == 0
    monkeypatch.setattr(resume, "SAVE_EVERY_S", 0.0)
    state.add(np.array([1]), {})
    loaded = open_work(out, fingerprint(), resume=True, overwrite=False)
    assert isinstance(loaded, WorkState)
    assert loaded.done.tolist() == [True, True, True, False]
    assert loaded.errors == {2: "OSError: bad"}
    assert loaded.vectors is not None and loaded.vectors[2].tolist() == [4, 5, 6]
    assert json.loads((state.work / "fingerprint.json").read_text()) == fingerprint()
