"""Faults during ``embed``: a model actor and a decode task's worker SIGKILLed
mid-run; Ray restarts or retries them and the output loses nothing."""

import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lightly_train
from tests.processes import ray_processes

NUM_IMAGES = 1200
ARGS = {"image_size": 96, "batch_size": 8, "format": "torch", "num_workers": 1}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault_photos")
    rng = np.random.default_rng(0)
    for i in range(NUM_IMAGES):
        pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i:04d}.jpg", quality=90)
    return root


class Embedding(logging.Handler):
    """Set once ``embed`` reports its first progress line (10% of the rows done):
    the model actors are past their start-up and embedding."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Embedded "):
            self.started.set()


def kill_mid_run(done: threading.Event, embedding: threading.Event) -> dict[str, int]:
    """SIGKILLs a decode task's worker while it decodes, then a model actor once
    rows are arriving; their pids."""
    killed: dict[str, int] = {}
    deadline = time.monotonic() + 300
    while len(killed) < 2 and not done.is_set() and time.monotonic() < deadline:
        if "decode" not in killed:
            for proc in ray_processes("decode_batch"):
                os.kill(proc.pid, signal.SIGKILL)
                killed["decode"] = proc.pid
                break
        if "decode" in killed and "model" not in killed and embedding.is_set():
            for proc in ray_processes("Embedder"):
                os.kill(proc.pid, signal.SIGKILL)
                killed["model"] = proc.pid
                break
        time.sleep(0.01)
    return killed


def test_killed_model_actor_and_decode_worker_lose_nothing(
    ray_address: str, tmp_path: Path, photos: Path, checkpoint: Path
) -> None:
    done, progress = threading.Event(), Embedding()
    killed: list[dict[str, int]] = []
    killer = threading.Thread(
        target=lambda: killed.append(kill_mid_run(done, progress.started))
    )
    logger = logging.getLogger("lightly_train._progress")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(progress)
    killer.start()
    try:
        summary = lightly_train.embed(
            out=tmp_path / "killed.pth", data=photos, checkpoint=checkpoint, **ARGS
        )
    finally:
        done.set()
        killer.join()
        logger.removeHandler(progress)
        logger.setLevel(level)
    assert set(killed[0]) == {"decode", "model"}, killed
    assert summary.num_images == NUM_IMAGES and not summary.failed

    undisturbed = lightly_train.embed(
        out=tmp_path / "undisturbed.pth", data=photos, checkpoint=checkpoint, **ARGS
    )
    got = torch.load(summary.out, weights_only=True)
    want = torch.load(undisturbed.out, weights_only=True)
    assert got["filenames"] == want["filenames"] == sorted(want["filenames"])
    assert len(got["filenames"]) == NUM_IMAGES
    torch.testing.assert_close(got["embeddings"], want["embeddings"])
