"""A CPU model actor reuses its batches' memory: after the first batches, a forward
that needs a large block (a batch's activations) faults in no new pages.

Ray runs an actor's tasks in a thread other than the main one, where glibc maps
every block over 64 MB anew unless the process has one malloc arena
(``_memory.ONE_ARENA``)."""

import resource
from pathlib import Path

import torch
from torch import nn

import lightly_train
from lightly_train.checkpoint import checkpoint_entry, save_checkpoint
from lightly_train.models.embedding_model import EmbeddingModel, model_name
from tests.images import write_image

BLOCK = 96 * 1024**2  # bytes: over the 64 MB heaps of glibc's thread arenas


class FaultCounter(nn.Module):
    """Allocates and fills ``BLOCK`` bytes per forward, as activations do, and
    appends the page faults of its thread during the forward to ``log``."""

    def __init__(self, log: str = "") -> None:
        super().__init__()
        self.log = log
        self.linear = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        int(x.shape[0])  # not fx-traceable: the actor keeps this forward
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        torch.ones(BLOCK // 4)
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{faults}\n")
        return self.linear(x.mean(dim=(2, 3)))


def test_a_cpu_actor_faults_in_a_large_block_once(
    ray_address: str, tmp_path: Path
) -> None:
    root = tmp_path / "images"
    for i in range(160):
        write_image(root / f"{i:03d}.png", size=(8, 8), seed=i)
    net = FaultCounter()
    entry = checkpoint_entry(EmbeddingModel(net), model_name(net), image_size=(8, 8))
    ckpt = save_checkpoint(tmp_path / "c.ckpt", entry)
    log = tmp_path / "faults.txt"
    summary = lightly_train.embed(out=tmp_path / "e.pth", data=root, checkpoint=ckpt,
                                  model=FaultCounter(str(log)), image_size=8,
                                  batch_size=8, devices=1)  # fmt: skip
    assert summary.num_images == 160
    faults = [int(n) for n in log.read_text().split()]
    assert len(faults) >= 20
    # Measured without one arena: 12,288 faults in every forward; with it,
    # 12,288 in some of the first few (the heap settling), then none.
    pages = BLOCK // resource.getpagesize()
    assert max(faults[len(faults) // 2 :]) < pages / 20, faults
