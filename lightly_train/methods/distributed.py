"""The few collective operations the losses need; no-ops without DDP."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of DDP workers, 1 when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This worker's DDP rank, 0 when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenates ``x`` (B, ...) of all workers, in rank order, to (W * B, ...).

    Gradients flow back to every worker's ``x`` (``torch.distributed.nn``), so a
    loss over the gathered tensor trains all workers' models.
    """
    if world_size() == 1:
        return x
    # Imported here: torch.distributed.nn is absent on builds without distributed.
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """Sums ``x`` over all workers, in place; returns ``x``."""
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x
