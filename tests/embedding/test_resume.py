"""Resumable ``embed``: the real command interrupted by a signal past 30% (or its
driver killed outright), then resumed; and the work directory's checks without
Ray."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import lightly_train
from lightly_train.checkpoint import create_checkpoint
from lightly_train.embedding import resume
from lightly_train.embedding.resume import WorkState, open_work, work_dir
from lightly_train.embedding.shards import scan_fragments
from lightly_train.errors import LightlyTrainError
from tests.images import write_image, write_not_an_image

EXE = str(Path(sys.executable).with_name("lightly-train"))
NUM_IMAGES = 1500  # and one that cannot be decoded
SETTINGS = {"image_size": 96, "batch_size": 8, "shard_size": 600}  # parquet: 3 parts
ARGS = [f"{key}={value}" for key, value in SETTINGS.items()]


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
    # In this process: the command's bits, without its imports.
    for fmt in ("csv", "parquet"):
        lightly_train.embed(out=reference / f"e.{fmt}", data=data, checkpoint=ckpt,
                            format=fmt, runner="local", **SETTINGS)  # fmt: skip
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
    ("signum", "fmt", "runner"),
    # auto: in the CLI's own process on 2 CPUs; the references too.
    [(signal.SIGINT, "csv", "auto"), (signal.SIGTERM, "parquet", "ray")],
)
def test_interrupted_embed_resumes_to_the_same_output(
    tmp_path: Path,
    job: tuple[Path, Path, Path],
    signum: int,
    fmt: str,
    runner: str,
    request: pytest.FixtureRequest,
) -> None:
    data, ckpt, references = job
    out, reference = tmp_path / f"e.{fmt}", references / f"e.{fmt}"
    code, output = interrupt_past(
        0.3, command(out, data, ckpt, f"format={fmt}", f"runner={runner}"), signum
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

    # On Ray the resumed run joins the session's Ray: the interrupted one started
    # and stopped its own, and another start costs the suite its seconds.
    joined = ({"RAY_ADDRESS": request.getfixturevalue("ray_address")}
              if runner == "ray" else {})  # fmt: skip
    resumed = subprocess.run(command(out, data, ckpt, f"format={fmt}",
                                     f"runner={runner}", "resume_interrupted=true"),
                             capture_output=True, text=True,
                             env={**environ(), **joined}, timeout=400)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    total = NUM_IMAGES + 1
    expected = f"Resuming: {saved} of {total} images are done; embedding the other "
    assert f"{expected}{total - saved}" in resumed.stderr
    assert files_of(out) == files_of(reference)
    failed = Path(f"{out}.failed.csv").read_text()
    assert failed == Path(f"{reference}.failed.csv").read_text()
    assert "0100_broken.jpg" in failed
    assert not work.exists()


def saved_rows(work: Path) -> int:
    """Rows the last save marked done; 0 before the first save."""
    done = work / "done.npy"
    return int(np.load(done).sum()) if done.is_file() else 0


def kill_past(fraction: float, cmd: list[str], work: Path) -> list[psutil.Process]:
    """Runs ``cmd`` saving every 0.2 s and SIGKILLs it once its progress line and
    its last save both pass ``fraction``; returns the processes its local Ray ran,
    found just before the kill.

    The driver dies first, then its process group: the local Ray's head (GCS,
    raylet and their agents; Ray's agents outlive a killed driver by about a
    minute). Ray's workers, each in a group of its own, are left to exit."""
    env = {**environ(), "LIGHTLY_TRAIN_EMBED_SAVE_EVERY_S": "0.2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        done = re.search(r"Embedded (\d+)/(\d+) images", line)
        past = done and int(done[1]) >= fraction * int(done[2])
        if past and saved_rows(work) >= fraction * NUM_IMAGES:
            break
    ray_procs = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):  # the group may be gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.stdout.close()  # Ray's workers may hold the pipe: no read to its end
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    return ray_procs


def running(proc: psutil.Process) -> bool:
    """Not exited; a zombie has (a container's init may never reap it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_driver_resumes_from_its_last_save(
    tmp_path: Path, job: tuple[Path, Path, Path]
) -> None:
    """SIGKILL leaves no handler to run: only the periodic saves survive it."""
    data, ckpt, references = job
    out, reference = tmp_path / "e.csv", references / "e.csv"
    work = Path(work_dir(str(out)))
    # On Ray: its processes must not outlive the driver either.
    ray_procs = kill_past(0.3, command(out, data, ckpt, "format=csv", "runner=ray"),
                          work)  # fmt: skip
    assert ray_procs
    # No Ray process outlives the driver and its group.
    deadline = time.monotonic() + 60
    while (alive := [p for p in ray_procs if running(p)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    for proc in alive:
        proc.kill()
    assert not alive, alive
    assert not out.exists()

    # The save is whole: every row marked done has its vector (or its error).
    expected = json.loads((work / "fingerprint.json").read_text())
    state = open_work(str(out), expected, resume=True, overwrite=False)
    assert isinstance(state, WorkState) and state.vectors is not None
    saved = state.num_done
    assert 0.3 * NUM_IMAGES <= saved < NUM_IMAGES + 1
    names = sorted(p.name for p in data.iterdir())
    rows = [line.split(",") for line in reference.read_text().splitlines()[1:]]
    vectors = {name: np.array(v, dtype=np.float32) for name, *v in rows}
    for i in np.flatnonzero(state.done):
        if names[i] in vectors:
            np.testing.assert_array_equal(state.vectors[i], vectors[names[i]])
        else:
            assert "broken" in names[i] and i in state.errors
    del state

    resumed = subprocess.run(command(out, data, ckpt, "format=csv",
                                     "resume_interrupted=true"),
                             capture_output=True, text=True, env=environ(),
                             timeout=400)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming: {saved} of {NUM_IMAGES + 1} images are done" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    failed = Path(f"{out}.failed.csv").read_text()
    assert failed == Path(f"{reference}.failed.csv").read_text()
    assert not work.exists()


@pytest.mark.parametrize("moment", ["while done.npy is written",
                                    "before done.npy is renamed"])  # fmt: skip
def test_a_kill_during_a_save_leaves_the_last_save_whole(
    tmp_path: Path, moment: str
) -> None:
    out = str(tmp_path / "e.pth")
    state = open_work(out, fingerprint(), resume=False, overwrite=False)
    state.vectors_for(3)[[0, 1]] = [[1, 2, 3], [4, 5, 6]]
    state.add(np.array([0, 1]), {1: "OSError: bad"})
    state.save()
    # Another process saves more rows and is killed in the middle of it.
    script = f"""
import os, signal
import numpy as np
from lightly_train.embedding import resume
state = resume.open_work({out!r}, {fingerprint()!r}, resume=True, overwrite=False)
state.vectors_for(3)[[2, 3]] = [[7, 8, 9], [1, 1, 1]]
state.add(np.array([2, 3]), {{3: "OSError: transient"}})
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)
def half(f, array):
    f.write(b"\\x93NUMPY")
    f.flush()
    die()
def replace(src, dst, real=os.replace):
    die() if str(dst).endswith("done.npy") else real(src, dst)
if {moment!r}.startswith("while"):
    np.save = half
else:
    os.replace = replace  # errors.json is renamed, done.npy is not
state.save()
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert any(p.name.endswith(".tmp") for p in state.work.iterdir())  # cut off
    loaded = open_work(out, fingerprint(), resume=True, overwrite=False)
    assert isinstance(loaded, WorkState) and loaded.vectors is not None
    assert loaded.done.tolist() == [True, True, False, False]
    # Row 3 is embedded again: its error of the killed run may not hold.
    assert loaded.errors == {1: "OSError: bad"}
    assert loaded.vectors[:2].tolist() == [[1, 2, 3], [4, 5, 6]]


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
