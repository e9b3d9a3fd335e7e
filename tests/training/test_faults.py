"""A training worker killed mid-run: Ray Train restarts it (``max_failures``) and
it continues from ``out/checkpoints/last.ckpt`` to the weights of an undisturbed run."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lightly_train.checkpoint import KEY
from lightly_train.training.fitting import TrainingFailedError
from lightly_train.training.train import train
from tests.images import write_image
from tests.processes import ray_processes

FAST = {
    "model": "torchvision/resnet18",
    "batch_size": 8,
    "transform_args": {"image_size": 32},
    "seed": 0,
    # Constant: the weights then depend only on the steps taken, not on timing.
    "optim_args": {"lr": 0.1, "min_lr": 0.1, "warmup_steps": 0},
}
EPOCHS = 6  # 4 steps each


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault_images")
    for i in range(32):
        write_image(root / f"{i:02d}.png", "RGB", size=(40, 40), seed=i)
    return root


def kill_worker_in_second_epoch(out: Path, done: threading.Event) -> int | None:
    """SIGKILLs the training worker once a step of epoch 1 is logged (epoch 0's
    checkpoints are saved before it starts); its pid."""
    deadline = time.monotonic() + 300
    while not done.is_set() and time.monotonic() < deadline:
        if max(logged_steps(out), default=0) > 4:
            workers = ray_processes("RayTrainWorker")
            if workers:
                os.kill(workers[0].pid, signal.SIGKILL)
                return workers[0].pid
        time.sleep(0.05)
    return None


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    rows = [json.loads(line) for line in lines if line.endswith("}")]
    return [row["step"] for row in rows if "epoch_end" not in row]


def weights(out: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 * EPOCHS
    return ckpt[KEY]["embedding_model_state_dict"]


def test_killed_worker_restarts_from_last_checkpoint(
    ray_address: str, tmp_path: Path, images: Path
) -> None:
    out = tmp_path / "killed"
    done = threading.Event()
    killed: list[int | None] = []
    killer = threading.Thread(
        target=lambda: killed.append(kill_worker_in_second_epoch(out, done))
    )
    killer.start()
    try:
        train(out=out, data=images, epochs=EPOCHS, max_failures=1, **FAST)
    finally:
        done.set()
        killer.join()
    assert killed[0] is not None, "the worker was never seen"
    log = (out / "train.log").read_text()
    assert "Resuming from" in log and "last.ckpt" in log  # the restarted attempt

    # Rows past the checkpoint were redone: the file has each step once.
    assert logged_steps(out) == list(range(1, 4 * EPOCHS + 1))

    # The reference trains in this process, without Ray Train's start-up: one Ray
    # Train worker ends with its weights, within float rounding where their torch
    # thread counts differ (tests/training/test_local.py); a step lost or taken
    # twice moves them far more.
    undisturbed = tmp_path / "undisturbed"
    train(out=undisturbed, data=images, epochs=EPOCHS, runner="local", **FAST)
    for name, value in weights(undisturbed).items():
        torch.testing.assert_close(weights(out)[name], value, rtol=1e-4, atol=1e-5,
                                   msg=name)  # fmt: skip


def test_killed_worker_without_retries_fails_and_can_resume(
    ray_address: str, tmp_path: Path, images: Path
) -> None:
    out = tmp_path / "once"
    done = threading.Event()
    killer = threading.Thread(target=kill_worker_in_second_epoch, args=(out, done))
    killer.start()
    try:
        with pytest.raises(TrainingFailedError, match="resume_interrupted=True"):
            train(out=out, data=images, epochs=EPOCHS, **FAST)
    finally:
        done.set()
        killer.join()
    train(out=out, data=images, epochs=EPOCHS, resume_interrupted=True, **FAST)
    assert weights(out)


@pytest.mark.parametrize("runner", ["auto", "ray"])  # auto: this process, 2 CPUs
def test_sigterm_to_the_driver_says_how_to_resume(
    tmp_path: Path, images: Path, runner: str
) -> None:
    out = tmp_path / "run"
    exe = str(Path(sys.executable).with_name("lightly-train"))
    args = [exe, "train", f"out={out}", f"data={images}", f"epochs={EPOCHS}",
            "model=torchvision/resnet18", "batch_size=8",
            "transform_args.image_size=32", "optim_args.lr=0.1",
            "optim_args.min_lr=0.1", "optim_args.warmup_steps=0",
            f"runner={runner}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 300
    while max(logged_steps(out), default=0) <= 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    last = out / "checkpoints" / "last.ckpt"
    assert f"'{last}' holds the last finished epoch" in output
    assert "resume_interrupted=True" in output
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    # Resumed in the command's process whatever the runner: Ray Train resumes in
    # test_killed_worker_without_retries_fails_and_can_resume.
    resumed = subprocess.run([*args[:-1], "runner=auto", "resume_interrupted=true"],
                             env=env, capture_output=True, text=True,
                             timeout=400)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert logged_steps(out) == list(range(1, 4 * EPOCHS + 1))
    assert weights(out)
