"""Shared fixtures of the method tests: tiny images, a tiny teacher checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_train.checkpoint import create_checkpoint


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; more thrash on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Twelve random RGB images of 40x48 pixels."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        for _ in range(12)
    ]


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lightly-train checkpoint of a randomly initialised resnet18."""
    path = tmp_path_factory.mktemp("teacher") / "t.ckpt"
    return create_checkpoint(path, model="torchvision/resnet18", image_size=(32, 32))
