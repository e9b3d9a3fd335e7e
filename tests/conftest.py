"""Shared fixtures: one real local Ray for the session, a real S3-compatible server
on loopback, and a real checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import ray

from lightly_train.checkpoint import create_checkpoint


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, with the standard AWS environment variables
    pointing at it (set before Ray starts, so Ray's workers inherit them)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).with_name("moto_server"))
    server = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket; returns its URI."""
    pafs.S3FileSystem(
        endpoint_override=s3_endpoint, allow_bucket_creation=True
    ).create_dir("lightly-test")
    return "s3://lightly-test"


@pytest.fixture(scope="session")
def ray_address(request: pytest.FixtureRequest) -> Iterator[str]:
    """Starts a 2-CPU local Ray once; its GCS address lets subprocesses join it."""
    # The S3 server's environment first, so Ray's workers inherit it (where moto
    # is installed: the GPU check's machine runs the GPU tests without it).
    if Path(sys.executable).with_name("moto_server").exists():
        request.getfixturevalue("s3_endpoint")
    # address="local": never join another Ray running on this machine.
    context = ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised resnet18 in the lightly-train checkpoint format."""
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    return create_checkpoint(path, model="torchvision/resnet18", image_size=(32, 32))
