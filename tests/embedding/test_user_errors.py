"""Errors a user can fix are one line that names the problem and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import lightly_train
from lightly_train.checkpoint import (
    checkpoint_entry,
    create_checkpoint,
    save_checkpoint,
)
from lightly_train.errors import LightlyTrainError
from lightly_train.models.embedding_model import EmbeddingModel, model_name
from tests.images import write_image

EXE = str(Path(sys.executable).with_name("lightly-train"))


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for i in range(8):
        write_image(tmp_path / "data" / f"{i}.png", "RGB", size=(12, 12), seed=i)
    return tmp_path / "data"


def test_vit_at_another_size_fails_on_the_driver(tmp_path: Path, images) -> None:
    ckpt = create_checkpoint(tmp_path / "vit.ckpt", model="timm/vit_tiny_patch16_224",
                             model_args={"img_size": 32, "depth": 1},
                             image_size=(32, 32))  # fmt: skip
    result = subprocess.run(
        [EXE, "embed", f"out={tmp_path / 'e.pth'}", f"data={images}",
         f"checkpoint={ckpt}", "image_size=64"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: image_size=64x64 does not fit the checkpoint's model "
        "timm/vit_tiny_patch16_224 (Input height (64) doesn't match model (32).); it "
        "was built for model_args.image_size=32: pass image_size=32."
    )
    assert "Traceback" not in result.stderr and "Started a local Ray" not in (
        result.stderr
    )
    assert not (tmp_path / "e.pth").exists()


class OutOfMemoryNet(nn.Module):
    """Raises what CUDA raises when a batch is too large (a CPU run cannot reach a
    real CUDA out-of-memory): the real Ray path then carries it back."""

    feature_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB "
                "total capacity)"
            )
        return self.linear(x.mean(dim=(2, 3)))


def test_out_of_memory_in_a_model_actor_is_one_line(
    ray_address: str, tmp_path: Path, images
) -> None:
    net = OutOfMemoryNet()
    entry = checkpoint_entry(EmbeddingModel(net), model_name(net), image_size=(8, 8))
    ckpt = save_checkpoint(tmp_path / "c.ckpt", entry)
    with pytest.raises(LightlyTrainError) as ex:
        lightly_train.embed(out=tmp_path / "e.pth", data=images, checkpoint=ckpt,
                            model=OutOfMemoryNet(), image_size=8,
                            batch_size=4)  # fmt: skip
    assert str(ex.value) == (
        "The CPU ran out of memory embedding batches of 4 images of 8x8. Use a "
        "smaller batch_size, e.g. batch_size=2."
    )
    assert not (tmp_path / "e.pth").exists()
    # The same model embeds with the suggested batch size.
    summary = lightly_train.embed(out=tmp_path / "e.pth", data=images,
                                  checkpoint=ckpt, model=OutOfMemoryNet(),
                                  image_size=8, batch_size=2)  # fmt: skip
    assert summary.num_images == 8
