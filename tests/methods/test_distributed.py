"""Losses under DDP: 2 CPU workers (gloo) match one process on the whole batch."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightly_train.methods.dino_head import DINOLoss
from lightly_train.methods.simclr import NTXentLoss

WORLD_SIZE = 2


def batch() -> dict[str, torch.Tensor]:
    """The global batch: 2 workers x 3 images."""
    gen = torch.Generator().manual_seed(0)
    return {
        "z0": torch.randn(6, 5, generator=gen, dtype=torch.float64),
        "z1": torch.randn(6, 5, generator=gen, dtype=torch.float64),
        "teacher": torch.randn(2, 6, 7, generator=gen, dtype=torch.float64),
        "student": torch.randn(3, 6, 7, generator=gen, dtype=torch.float64),
    }


def run_losses(data: dict[str, torch.Tensor], rows: slice) -> dict[str, torch.Tensor]:
    z0 = data["z0"][rows].clone().requires_grad_()
    z1 = data["z1"][rows].clone().requires_grad_()
    ntxent = NTXentLoss(temperature=0.5)(z0, z1)
    ntxent.backward()
    dino = DINOLoss(output_dim=7).double()
    dino_loss = dino(
        list(data["teacher"][:, rows]), list(data["student"][:, rows]), 0.04
    )
    return {
        "ntxent": ntxent.detach(),
        "z0_grad": z0.grad,
        "dino": dino_loss,
        "center": dino.center,
    }


def worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    # Deprecated collectives (torch.distributed.nn's all_gather) fail the test.
    warnings.filterwarnings("error", category=FutureWarning)
    warnings.filterwarnings("error", category=DeprecationWarning)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=WORLD_SIZE
    )
    try:
        result = run_losses(batch(), slice(3 * rank, 3 * rank + 3))
        torch.save(result, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or "fork" not in mp.get_all_start_methods(),
    reason="needs torch.distributed and fork",
)
def test_losses_across_two_workers(tmp_path: Path) -> None:
    # fork: the workers inherit the imported modules instead of importing them again.
    mp.start_processes(
        worker, args=(str(tmp_path),), nprocs=WORLD_SIZE, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    single = run_losses(batch(), slice(None))

    # DDP averages over workers; each worker's loss is the mean over its rows.
    for key in ["ntxent", "dino"]:
        mean = sum(r[key] for r in ranks) / WORLD_SIZE
        torch.testing.assert_close(mean, single[key])
    # Gathered negatives carry gradient: each worker's input gradient is the sum
    # over all workers' losses, i.e. WORLD_SIZE x that of the averaged loss.
    grads = torch.cat([r["z0_grad"] for r in ranks]) / WORLD_SIZE
    torch.testing.assert_close(grads, single["z0_grad"])
    # The center is the same on every worker and equals the whole-batch update.
    for r in ranks:
        torch.testing.assert_close(r["center"], single["center"])
