"""Shared fixtures: one real local Ray for the session, and a real checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from lightly_train.checkpoint import create_checkpoint


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """Starts a 2-CPU local Ray once; its GCS address lets subprocesses join it."""
    # address="local": never join another Ray running on this machine.
    context = ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised resnet18 in the lightly-train checkpoint format."""
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    return create_checkpoint(path, model="torchvision/resnet18", image_size=(32, 32))
