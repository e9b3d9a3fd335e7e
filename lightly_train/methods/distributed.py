"""The few collective operations the losses need; no-ops without DDP."""

from __future__ import annotations

from typing import Any

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

    Gradients flow back to every worker's ``x``: a loss over the gathered tensor
    trains all workers' models.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward gives each worker the gradient of every
    worker's loss with respect to its own rows: the sum over workers of their
    gradients for its slice (one ``all_reduce``, then its chunk). What the
    deprecated ``torch.distributed.nn.functional.all_gather`` computed."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(world_size(), dim=0)[rank()]


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """Sums ``x`` over all workers, in place; returns ``x``."""
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x
