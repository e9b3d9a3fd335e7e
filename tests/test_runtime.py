"""What the connected Ray is, and what a command does on a machine whose Ray cannot
give it GPUs (the plans themselves: tests/test_sizing.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_train.checkpoint import create_checkpoint
from lightly_train.runtime import cluster_can_grow, only_this_machine
from tests.images import write_image
from tests.test_sizing import NO_GPUS_HERE


def test_a_ray_started_in_this_process_cannot_grow(ray_address: str) -> None:
    """The session's ``ray.init(address="local")``; a connected cluster can
    (tests/integration/test_multinode.py)."""
    assert not cluster_can_grow()


@pytest.mark.parametrize("command", ["embed", "train"])
def test_gpus_asked_of_a_machine_without_fail_at_once(
    tmp_path: Path, command: str
) -> None:
    """The command's own local Ray gets no GPUs later: one line, not a wait for
    an autoscaler that does not exist, and nothing written."""
    for i in range(4):
        write_image(tmp_path / "data" / f"{i}.png", "RGB", size=(16, 16), seed=i)
    out = tmp_path / "out"
    args = [f"out={out}", f"data={tmp_path / 'data'}", "accelerator=gpu", "devices=2"]
    if command == "embed":
        ckpt = create_checkpoint(tmp_path / "c.ckpt", model="torchvision/resnet18")
        args.append(f"checkpoint={ckpt}")
    else:
        args += ["model=torchvision/resnet18", "epochs=1", "batch_size=2"]
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lightly-train")), command, *args],
        capture_output=True, text=True, timeout=300, env=environ,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == NO_GPUS_HERE, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["c.ckpt", "data"] if command == "embed" else ["data"]
    )


def test_a_local_ray_is_only_this_machine(ray_address: str) -> None:
    """The session's local Ray: one node, at this machine's address (two nodes
    are not: tests/integration/test_multinode.py)."""
    assert only_this_machine()
