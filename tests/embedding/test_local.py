"""``embed`` in the calling process (``runner="local"``, and ``"auto"`` on a laptop):
the same output as on Ray, bit for bit, and the process left as it was."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import lightly_train
from lightly_train._cpu import bf16_hint, native_bf16
from lightly_train.embedding.writers import SHARDED_WRITERS, WRITERS
from lightly_train.errors import LightlyTrainError
from tests.images import make_image_tree

SIZE = (24, 32)
EXE = str(Path(sys.executable).with_name("lightly-train"))
NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("images")
    return root, make_image_tree(root)


def without_ray_address() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


@pytest.mark.parametrize(
    ("cpus", "ray_address", "args", "expected"),
    [
        (2, False, ("auto", "auto", "auto"), True),  # a laptop
        (4, False, ("auto", "cpu", 1), True),
        (16, False, ("auto", "auto", "auto"), False),  # a workstation: actors
        (2, True, ("auto", "auto", "auto"), False),  # under ray job submit
        (2, False, ("auto", "gpu", "auto"), False),
        (2, False, ("auto", "cpu", 2), False),  # two model replicas
        (2, False, ("ray", "auto", "auto"), False),
        (64, True, ("local", "auto", "auto"), True),
    ],
)
def test_auto_runs_here_on_a_laptop_with_no_ray_to_join(
    cpus: int, ray_address: bool, args: tuple, expected: bool
) -> None:
    # A fresh process: this one's Ray (the session fixture) would say "ray".
    code = (
        "import lightly_train.runtime as r\n"
        f"r.machine_cpus = lambda: {cpus}\n"
        f"print(r.runs_here(*{args!r}))\n"
    )
    env = without_ray_address()
    if ray_address:
        env["RAY_ADDRESS"] = "127.0.0.1:1"  # never contacted: the rule reads it only
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stdout.strip() == str(expected)


@pytest.mark.parametrize("fmt", sorted([*WRITERS, *SHARDED_WRITERS]))
def test_local_output_equals_ray_output_bit_for_bit(
    ray_address: str, tmp_path: Path, checkpoint: Path, tree, fmt: str
) -> None:
    """Corrupt files included; on Ray 2 actors x 1 thread, here 1 model x 2
    threads: the same bits, since each image's batch is padded alike."""
    root, kinds = tree
    args = {"data": root, "checkpoint": checkpoint, "image_size": SIZE,
            "format": fmt, "batch_size": 8, "shard_size": 10}  # fmt: skip
    on_ray = lightly_train.embed(out=tmp_path / "ray", runner="ray", **args)
    here = lightly_train.embed(out=tmp_path / "here", runner="local", **args)
    assert here.failed == on_ray.failed
    assert set(here.failed) == {n for n, k in kinds.items() if k == "corrupt"}
    assert (here.num_images, here.dim) == (on_ray.num_images, on_ray.dim)
    assert on_ray.ray_logs and not here.ray_logs
    if fmt in SHARDED_WRITERS:
        parts = sorted(p.name for p in (tmp_path / "here").iterdir())
        assert parts == sorted(p.name for p in (tmp_path / "ray").iterdir())
        assert pq.read_table(tmp_path / "here").equals(pq.read_table(tmp_path / "ray"))
    elif fmt == "torch":  # the zip's record names hold the file's name
        a = torch.load(tmp_path / "here", weights_only=True)
        b = torch.load(tmp_path / "ray", weights_only=True)
        assert a["filenames"] == b["filenames"]
        assert torch.equal(a["embeddings"], b["embeddings"])
    else:
        assert (tmp_path / "here").read_bytes() == (tmp_path / "ray").read_bytes()
    report = (tmp_path / "here.failed.csv").read_text()
    assert report == (tmp_path / "ray.failed.csv").read_text()


def test_a_failed_local_run_leaves_the_process_as_it_was(
    tmp_path: Path, checkpoint: Path, tree
) -> None:
    """on_error="raise": the error names the corrupt file, no output is written
    (the rows done are kept for a resume), no decode thread is left, and torch's
    thread count is the caller's again."""
    root, kinds = tree
    first_bad = sorted(n for n, k in kinds.items() if k == "corrupt")[0]
    torch.set_num_threads(1)
    try:
        with pytest.raises(LightlyTrainError, match=first_bad):
            lightly_train.embed(
                out=tmp_path / "e.pth", data=root, checkpoint=checkpoint,
                image_size=SIZE, batch_size=2, on_error="raise", runner="local",
            )  # fmt: skip
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    assert not any(t.name.startswith("lightly-train-decode")
                   for t in threading.enumerate())  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.pth.embed-work"]


@pytest.mark.skipif(not NO_GPU, reason="the error is for machines without a GPU")
def test_local_gpu_without_one_names_the_fix(
    tmp_path: Path, checkpoint: Path, tree
) -> None:
    with pytest.raises(LightlyTrainError, match="torch sees no GPU.*runner='ray'"):
        lightly_train.embed(
            out=tmp_path / "e.pth", data=tree[0], checkpoint=checkpoint,
            accelerator="gpu", runner="local",
        )  # fmt: skip


def test_local_with_several_devices_names_the_fix(
    tmp_path: Path, checkpoint: Path, tree
) -> None:
    with pytest.raises(LightlyTrainError, match="devices=1, or runner='ray'"):
        lightly_train.embed(
            out=tmp_path / "e.pth", data=tree[0], checkpoint=checkpoint, devices=2,
            runner="local",
        )  # fmt: skip
    assert not (tmp_path / "e.pth").exists()


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_a_resume_with_every_row_done_only_writes(
    ray_address: str,
    tmp_path: Path,
    checkpoint: Path,
    tree,
    monkeypatch: pytest.MonkeyPatch,
    runner: str,
) -> None:
    """A run whose writer failed (a full disk) after every row was embedded: the
    resume embeds nothing and writes what an uninterrupted run writes."""
    args = {"data": tree[0], "checkpoint": checkpoint, "image_size": SIZE,
            "batch_size": 8, "runner": runner}  # fmt: skip

    def full_disk(path: Path, embeddings: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setitem(WRITERS, "torch", full_disk)
        with pytest.raises(OSError, match="No space left"):
            lightly_train.embed(out=tmp_path / "e.pth", **args)
    resumed = lightly_train.embed(out=tmp_path / "e.pth", resume_interrupted=True,
                                  **args)  # fmt: skip
    reference = lightly_train.embed(out=tmp_path / "r.pth", **args)
    assert resumed.failed == reference.failed
    a = torch.load(resumed.out, weights_only=True)
    b = torch.load(reference.out, weights_only=True)
    assert a["filenames"] == b["filenames"]
    assert torch.equal(a["embeddings"], b["embeddings"])


def test_cli_on_a_laptop_embeds_without_starting_ray(
    tmp_path: Path, checkpoint: Path, tree
) -> None:
    """The command as a user runs it on 2 CPUs: no Ray session, the output as
    the API's on Ray."""
    root, _ = tree
    out = tmp_path / "e.pth"
    done = subprocess.run(
        [EXE, "embed", f"out={out}", f"data={root}", f"checkpoint={checkpoint}",
         "image_size=[24,32]", "batch_size=8"],
        env=without_ray_address(), capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "in this process" in log
    assert "Starting Ray" not in log and "Ray's logs" not in log
    reference = lightly_train.embed(
        out=tmp_path / "r.pth", data=root, checkpoint=checkpoint, image_size=SIZE,
        batch_size=8, runner="local",
    )  # fmt: skip
    a = torch.load(out, weights_only=True)
    b = torch.load(reference.out, weights_only=True)
    assert a["filenames"] == b["filenames"]
    assert np.array_equal(a["embeddings"].numpy(), b["embeddings"].numpy())


def test_bf16_on_cpu_is_close_to_float32_and_the_log_says_when(
    tmp_path: Path, checkpoint: Path, tree, caplog: pytest.LogCaptureFixture
) -> None:
    """precision=bf16-mixed on CPU runs in bf16 (other bits), close to float32;
    a float32 run names it where the CPU computes bf16 in hardware, only there."""
    root, _ = tree
    args = {"data": root, "checkpoint": checkpoint, "image_size": SIZE,
            "batch_size": 8, "runner": "local"}  # fmt: skip
    hints = {}
    for precision in ("32-true", "bf16-mixed"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lightly_train"):
            lightly_train.embed(out=tmp_path / precision, precision=precision, **args)
        hints[precision] = [
            r.message for r in caplog.records if "computes bf16" in r.message
        ]
    assert hints["bf16-mixed"] == []
    flag = native_bf16()
    assert hints["32-true"] == ([bf16_hint("32-true", "embeds")] if flag else [])
    if flag:
        assert f"({flag})" in hints["32-true"][0]
    full = torch.load(tmp_path / "32-true", weights_only=True)["embeddings"]
    half = torch.load(tmp_path / "bf16-mixed", weights_only=True)["embeddings"]
    assert not torch.equal(full, half)
    cosine = torch.nn.functional.cosine_similarity(full, half)
    assert cosine.min() > 0.999, cosine.min()
