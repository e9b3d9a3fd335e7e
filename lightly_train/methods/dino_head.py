"""DINO's projection head, its loss (a centred teacher, sharpened and softmaxed,
against the student's views) and the teacher's EMA update.

Caron et al., ICCV 2021, https://arxiv.org/abs/2104.14294; defaults follow the
reference code (github.com/facebookresearch/dino).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from lightly_train.methods import distributed


class DINOProjectionHead(nn.Module):
    """The DINO head: 3-layer MLP, L2-normalised bottleneck, weight-normed output.

    Args:
        input_dim: Dimension of the embeddings it projects.
        hidden_dim: MLP hidden width (paper: 2048).
        bottleneck_dim: Bottleneck dimension (paper: 256).
        output_dim: Prototypes ``K`` (paper: 65536).
        batch_norm: Batch norm in the MLP (reference code: off for ViTs).
        norm_last_layer: Fix the weight-norm gain of the last layer to 1, which
            the reference code recommends for stability.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        output_dim: int = 65536,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim in (input_dim, hidden_dim):
            layers.append(nn.Linear(in_dim, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, output_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        gain.data.fill_(1.0)
        gain.requires_grad = not norm_last_layer

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)  # (N, bottleneck_dim)
        return self.last_layer(x)  # (N, output_dim)


class DINOLoss(nn.Module):
    """Cross entropy between the centred, sharpened teacher and the student (Eq. 1).

    Every teacher (global) view is compared with every student view except the same
    view. After each call the center is moved towards the mean teacher output of the
    batch, averaged over all DDP workers (Eq. 4).

    Args:
        output_dim: ``K``, the dimension of the head outputs.
        student_temp: Student temperature (paper: 0.1).
        center_momentum: The ``m`` of the center's EMA (paper: 0.9).

    Example:
        >>> loss_fn = DINOLoss(output_dim=16)
        >>> teacher = [torch.randn(4, 16) for _ in range(2)]
        >>> student = [torch.randn(4, 16) for _ in range(8)]
        >>> loss = loss_fn(teacher, student, teacher_temp=0.04)
    """

    def __init__(
        self, output_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.center: Tensor
        self.register_buffer("center", torch.zeros(1, output_dim))

    def forward(
        self, teacher_out: list[Tensor], student_out: list[Tensor], teacher_temp: float
    ) -> Tensor:
        """Returns the loss and updates the center.

        Args:
            teacher_out: Teacher outputs of the global views, each (B, K).
            student_out: Student outputs of all views, each (B, K); the first
                ``len(teacher_out)`` are the same global views as the teacher's.
            teacher_temp: Teacher temperature of this step.
        """
        teacher_probs = [
            F.softmax((t.detach() - self.center) / teacher_temp, dim=-1)
            for t in teacher_out
        ]
        student_log_probs = [
            F.log_softmax(s / self.student_temp, dim=-1) for s in student_out
        ]
        losses = [
            -(t * s).sum(dim=-1).mean()
            for i, t in enumerate(teacher_probs)
            for j, s in enumerate(student_log_probs)
            if i != j
        ]
        self.update_center(torch.cat(teacher_out))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """EMA of the center towards the mean of ``teacher_out`` (N, K) over workers."""
        batch_sum = distributed.all_reduce_sum(teacher_out.sum(dim=0, keepdim=True))
        # As the reference code: all workers are assumed to have equal batches.
        batch_center = batch_sum / (teacher_out.shape[0] * distributed.world_size())
        self.center.mul_(self.center_momentum).add_(
            batch_center, alpha=1 - self.center_momentum
        )


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student``, parameter-wise.

    Buffers (batch norm statistics) are left alone: the teacher keeps its own, as
    in the reference code.
    """
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
