"""Optimizers and the learning-rate schedule shared by all methods."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor
from torch.optim import Optimizer

from lightly_train.methods.args import StrictArgs

OptimizerName = Literal["adamw", "lars", "sgd"]
# Key of the parameter groups that get weight decay (not biases and norms).
DECAYS = "lightly_train_decays"


class OptimArgs(StrictArgs):
    """User-facing optimizer arguments; ``None`` means the method's paper default.

    Attributes:
        optimizer: One of ``"adamw"``, ``"lars"``, ``"sgd"``.
        lr: Absolute peak learning rate. When ``None`` it is the method's
            ``lr_per_256`` scaled to the global batch size: linearly,
            ``lr_per_256 * B / 256`` (Goyal et al. 2017; DINO), or, for SimCLR's
            LARS, by the square root, ``lr_per_256 * sqrt(B / 256)`` (SimCLR
            Appendix B.1: better for small batches and short runs).
        weight_decay: Decoupled (AdamW) or L2 (SGD, LARS) weight decay. Biases and
            normalisation parameters never get weight decay.
        weight_decay_end: Weight decay at the last step: it follows a half cosine
            from ``weight_decay`` (as DINO's 0.04 -> 0.4). ``None`` is the method's
            default, which for most is a constant ``weight_decay``.
        momentum: Momentum of SGD and LARS.
        betas: Betas of AdamW.
        warmup_steps: Linear warmup length in optimizer steps.
        warmup_epochs: Warmup length in epochs; used when ``warmup_steps`` is not set.
            When neither is set, the warmup is the method's paper default (10
            epochs) but at most 10% of the run's steps, so that short runs decay
            too.
        min_lr: Learning rate at the end of the cosine decay.
    """

    optimizer: OptimizerName | None = None
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    weight_decay_end: float | None = Field(default=None, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | None = Field(default=None, ge=0)
    warmup_epochs: float | None = Field(default=None, ge=0)
    min_lr: float = Field(default=0.0, ge=0)


@dataclass(frozen=True)
class OptimDefaults:
    """Paper defaults of one optimizer for one method."""

    lr_per_256: float
    weight_decay: float
    # How lr_per_256 scales to a global batch size B: "linear" (x B / 256) or
    # "sqrt" (x sqrt(B / 256)).
    lr_scaling: Literal["linear", "sqrt"] = "linear"
    warmup_epochs: float = 10.0
    # None: weight decay is constant.
    weight_decay_end: float | None = None

    def lr(self, global_batch_size: int) -> float:
        """The peak learning rate for ``global_batch_size``."""
        ratio = global_batch_size / 256
        return self.lr_per_256 * (
            math.sqrt(ratio) if self.lr_scaling == "sqrt" else ratio
        )


# Used where a method's paper gives no values for an optimizer.
GENERIC_OPTIM_DEFAULTS: dict[str, OptimDefaults] = {
    # SimCLR (Chen et al. 2020, Appendix B.1): LARS, lr 0.075 x sqrt(B), wd 1e-6.
    "lars": OptimDefaults(lr_per_256=1.2, weight_decay=1e-6, lr_scaling="sqrt"),
    # DINO repository's ResNet-50 recipe: SGD, lr 0.03 x B/256, wd 1e-4.
    "sgd": OptimDefaults(lr_per_256=0.03, weight_decay=1e-4),
    # DINO (Caron et al. 2021, Sec. 3.5 / Appendix): AdamW, lr 5e-4 x B/256, wd 0.04.
    "adamw": OptimDefaults(lr_per_256=5e-4, weight_decay=0.04),
}


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    As in SimCLR, biases and normalisation parameters (tensors with ``ndim <= 1``)
    are excluded from both weight decay and the trust-ratio adaptation.

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate.
        momentum: Momentum factor.
        weight_decay: L2 weight decay, added to the gradient before adaptation.
        trust_coefficient: The ``eta`` of the trust ratio; 0.001 as in SimCLR.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    p_norm, u_norm = torch.norm(p), torch.norm(update)
                    trust = torch.where(
                        (p_norm > 0) & (u_norm > 0),
                        group["trust_coefficient"] * p_norm / u_norm,
                        torch.ones_like(p_norm),
                    )
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(params: Iterable[Tensor], args: OptimArgs) -> Optimizer:
    """Builds the optimizer of resolved ``args`` (``optimizer``, ``lr`` and
    ``weight_decay`` set) over the trainable ``params``.

    Biases and normalisation parameters (``ndim <= 1``) go to a group without
    weight decay, as in SimCLR and DINO.
    """
    assert args.optimizer and args.lr is not None and args.weight_decay is not None
    trainable = [p for p in params if p.requires_grad]
    # DECAYS marks the groups whose weight decay follows the schedule.
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], DECAYS: True},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if args.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=args.lr, betas=args.betas, weight_decay=args.weight_decay
        )
    if args.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    # LARS excludes ndim <= 1 parameters itself; one group keeps its logic in one place.
    return LARS(
        [{"params": trainable, DECAYS: True}],
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
    )


def set_weight_decay(optimizer: Optimizer, weight_decay: float) -> None:
    """Sets the weight decay of the groups ``build_optimizer`` made to decay."""
    for group in optimizer.param_groups:
        if group.get(DECAYS):
            group["weight_decay"] = weight_decay


def warmup_cosine(
    step: int, warmup_steps: int, total_steps: int | None, end_factor: float = 0.0
) -> float:
    """Returns the learning-rate factor at ``step``: linear warmup, then cosine decay.

    The factor rises linearly to 1 over ``warmup_steps`` (the first step already
    gets ``1 / warmup_steps``), then follows a half cosine down to ``end_factor``
    at ``total_steps``. Without ``total_steps`` it stays at 1 after warmup.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps is None or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule(
    step: int, total_steps: int | None, start: float, end: float
) -> float:
    """Half-cosine from ``start`` (step 0) to ``end`` (``total_steps``).

    Used for DINO's EMA momentum (0.996 -> 1). Without ``total_steps`` it stays at
    ``start``.
    """
    if not total_steps:
        return start
    progress = min(1.0, max(0.0, step / total_steps))
    return end - (end - start) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """Linear ramp from ``start`` (step 0) to ``end`` (``warmup_steps`` and after).

    Used for DINO's teacher temperature (0.04 -> 0.07).
    """
    if step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
