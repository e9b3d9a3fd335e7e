"""Manifest blocks tile the model's batches: the forwards of an ``embed`` run are
whole batches but for the end, not a batch and a padded remainder per block."""

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lightly_train
from lightly_train.checkpoint import checkpoint_entry, save_checkpoint
from lightly_train.data.names import ImageFiles
from lightly_train.embedding.blocks import (
    MAX_BLOCK_ROWS,
    MIN_BLOCK_ROWS,
    block_rows,
    manifest,
    max_block_rows,
)
from lightly_train.models.embedding_model import EmbeddingModel, model_name
from lightly_train.sizing import plan_actors
from tests.images import write_image


@pytest.mark.parametrize("batch", [1, 4, 7, 16, 40, 64, 100, 257, 509, 512, 1000])
@pytest.mark.parametrize("target", [1, 16, 19, 38, 113, 256, 6250])
def test_block_rows_tile_batches(target: int, batch: int) -> None:
    rows = block_rows(target, batch)
    assert rows % batch == 0 or batch % rows == 0
    assert min(batch, MIN_BLOCK_ROWS) <= rows <= max(batch, MAX_BLOCK_ROWS)


@pytest.mark.parametrize(
    ("num_files", "batch", "rows"),
    [(1, 8, [1]), (16, 16, [16]), (40, 40, [20, 20]), (600, 64, [32] * 18 + [24]),
     (1800, 64, [64] * 28 + [8]), (48_000, 512, None), (100_000, 64, None)],
)  # fmt: skip
def test_manifest_blocks_cover_every_row_once_in_order(
    num_files: int, batch: int, rows: list[int] | None
) -> None:
    """16 to 256 rows per block: a small job starts no decode task (worker
    process) it has no rows for, a large one no task per handful of rows."""
    names = [f"{i}.png" for i in range(num_files)]
    files = ImageFiles(names, [f"/d/{n}" for n in names], num_ignored=0, num_hidden=0)
    plan = plan_actors("cpu", "auto", "auto", "32-true", {"CPU": 2.0})
    blocks = manifest(files, plan, batch)
    sizes = [len(b) for b in blocks]
    if rows is not None:
        assert sizes == rows
    assert all(size <= MAX_BLOCK_ROWS for size in sizes)
    assert all(size >= MIN_BLOCK_ROWS for size in sizes[:-1])
    assert all(size % batch == 0 or batch % size == 0 for size in sizes[:-1])
    idx = np.concatenate([b["idx"].to_numpy() for b in blocks])
    np.testing.assert_array_equal(idx, np.arange(num_files))
    assert blocks[-1]["path"][-1].as_py() == files.paths[-1]


@pytest.mark.parametrize(
    ("size", "most"),
    [((224, 224), 256), ((256, 192), 261), ((100, 100), 1284), ((64, 64), 2048),
     ((1024, 1024), 16)],
)  # fmt: skip
def test_small_images_make_longer_blocks(size: tuple[int, int], most: int) -> None:
    """Blocks hold about as many decoded bytes as 256 images of 224x224: 200k
    images of 32x32 are 98 decode tasks, not 782 (Ray Data keeps state per
    block on the driver)."""
    assert max_block_rows(size) == most
    names = [f"{i}.png" for i in range(200_000)]
    files = ImageFiles(names, names, num_ignored=0, num_hidden=0)
    plan = plan_actors("cpu", "auto", "auto", "32-true", {"CPU": 2.0})
    sizes = [len(b) for b in manifest(files, plan, 64, most=max_block_rows(size))]
    assert max(sizes) <= most and len(sizes) == math.ceil(200_000 / sizes[0])
    if size == (64, 64):
        assert len(sizes) == 98


class CallCounter(nn.Module):
    """Appends ``measure(batch)`` (the batch size) to ``log`` per forward, in the
    actor's process."""

    def __init__(self, log: str = "") -> None:
        super().__init__()
        self.log = log
        self.linear = nn.Linear(3, 4)

    def measure(self, x: torch.Tensor) -> int:
        return int(x.shape[0])  # not fx-traceable: the actor keeps this forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.measure(x)
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{value}\n")
        return self.linear(x.mean(dim=(2, 3)))


def embed_logged(
    net_cls: type[CallCounter], tmp_path: Path, num_images: int, **embed_args: Any
) -> list[int]:
    """Embeds ``num_images`` 8x8 PNGs with a custom ``net_cls`` model; returns
    what its forwards logged (as ints)."""
    root = tmp_path / "images"
    for i in range(num_images):
        write_image(root / f"{i:04d}.png", size=(8, 8), seed=i)
    net = net_cls()
    entry = checkpoint_entry(EmbeddingModel(net), model_name(net), image_size=(8, 8))
    ckpt = save_checkpoint(tmp_path / "c.ckpt", entry)
    log = tmp_path / "forwards.txt"
    summary = lightly_train.embed(out=tmp_path / "e.pth", data=root, checkpoint=ckpt,
                                  model=net_cls(str(log)), image_size=8,
                                  **embed_args)  # fmt: skip
    assert summary.num_images == num_images
    return [int(n) for n in log.read_text().split()]


def test_embed_runs_whole_batches_but_at_the_end(
    ray_address: str, tmp_path: Path
) -> None:
    """300 images in batches of 32 are 10 forwards; at most one more where the
    last, short block arrives before others. Blocks of 19 rows (the sizing that
    ignored the batch) made a batch of 32 and a padded one of 6 per 38 rows: 16."""
    log = embed_logged(CallCounter, tmp_path, num_images=300, batch_size=32)
    # Every batch is padded to 32; other lines are set-up (a one-image probe of
    # the output size).
    calls = [n for n in log if n == 32]
    assert math.ceil(300 / 32) <= len(calls) <= math.ceil(300 / 32) + 1
