"""The README's main job, as `make demo` runs it, in a subprocess: on this 2-CPU
machine in its own process (runner="auto"), elsewhere on its own Ray."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image


def test_demo_trains_then_embeds_the_sample_photos(tmp_path):
    demo = Path(__file__).parents[1] / "examples" / "demo.py"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, str(demo), str(tmp_path)],
                            capture_output=True, text=True, env=env,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 30, "\n".join(lines)
    assert not [line for line in lines if "WARNING" in line or "ERROR" in line]
    data = torch.load(tmp_path / "embeddings.pth", weights_only=True)
    assert len(data["filenames"]) == 9 and data["embeddings"].shape == (9, 512)
    assert (tmp_path / "my_experiment" / "checkpoints" / "last.ckpt").is_file()
    printed = result.stdout
    assert f"Embeddings are in {(tmp_path / 'embeddings.pth').resolve()}" in printed
    picture = (tmp_path / "explore.png").resolve()
    assert f"A map, neighbours and near-duplicates: {picture}" in printed
    with Image.open(picture) as image:
        assert image.format == "PNG"
    with Image.open(tmp_path / "my_experiment" / "metrics.png") as image:
        assert image.format == "PNG"
