"""DINO: self-distillation with no labels.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
https://arxiv.org/abs/2104.14294; defaults follow the paper and its reference code
(github.com/facebookresearch/dino, ``main_dino.py``).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from lightly_train.methods.dino_head import DINOLoss, DINOProjectionHead, update_ema
from lightly_train.methods.method import Method, MethodArgs, forward_by_size
from lightly_train.methods.optim import (
    GENERIC_OPTIM_DEFAULTS,
    OptimDefaults,
    OptimizerName,
    cosine_schedule,
    linear_warmup,
)
from lightly_train.methods.transforms import (
    MultiViewTransform,
    TransformArgs,
    scale_size,
    to_size,
    view_transform,
)
from lightly_train.models.embedding_model import EmbeddingModel


class DINOArgs(MethodArgs):
    """DINO method arguments (paper defaults).

    Attributes:
        hidden_dim, bottleneck_dim, output_dim, batch_norm, norm_last_layer: Of the
            ``DINOProjectionHead``.
        student_temp: Student temperature.
        warmup_teacher_temp: Teacher temperature at the start.
        teacher_temp: Teacher temperature after warmup.
        teacher_temp_warmup_epochs: Linear teacher temperature warmup length.
        center_momentum: EMA momentum of the center.
        momentum_start: EMA momentum of the teacher at the start; it follows a
            cosine schedule to ``momentum_end`` at the last step.
        momentum_end: EMA momentum of the teacher at the end.
        freeze_last_layer_epochs: The head's last layer gets no update in these
            first epochs, which stabilises training.
    """

    hidden_dim: int = Field(default=2048, ge=1)
    bottleneck_dim: int = Field(default=256, ge=1)
    output_dim: int = Field(default=65536, ge=1)
    batch_norm: bool = False
    norm_last_layer: bool = True
    student_temp: float = Field(default=0.1, gt=0)
    warmup_teacher_temp: float = Field(default=0.04, gt=0)
    teacher_temp: float = Field(default=0.07, gt=0)
    teacher_temp_warmup_epochs: float = Field(default=30, ge=0)
    center_momentum: float = Field(default=0.9, ge=0, le=1)
    momentum_start: float = Field(default=0.996, ge=0, le=1)
    momentum_end: float = Field(default=1.0, ge=0, le=1)
    freeze_last_layer_epochs: float = Field(default=1, ge=0)


class DINOTransformArgs(TransformArgs):
    """DINO multi-crop arguments (reference code defaults).

    Attributes:
        global_crop_scale: Area range of the 2 global crops (``image_size``).
        local_crop_scale: Area range of the local crops.
        local_image_size: Size of the local crops; default ``96/224 * image_size``.
        n_local_views: Number of local crops.
    """

    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    local_image_size: int | tuple[int, int] | None = None
    n_local_views: int = Field(default=6, ge=0)


class DINO(Method):
    """DINO: a student matches an EMA teacher's centred, sharpened outputs.

    ``training_step`` expects 2 global views followed by any number of local views,
    each (B, 3, h, w); the teacher sees only the global views.
    ``self.teacher_embedding_model`` is the EMA teacher, which the paper finds the
    better model to evaluate (Sec. 5.2): it is ``trained_model()``, so checkpoints,
    ``embed`` and ``export`` use the teacher.

    Optimizer defaults: AdamW, lr ``5e-4 * global_batch_size / 256``, weight decay
    from 0.04 to 0.4 on a cosine, 10 warmup epochs, cosine decay (paper's ViT
    recipe; its ResNet-50 recipe, ``optim_args={"optimizer": "sgd"}``, is lr
    ``0.03 * B / 256`` and a constant weight decay of 1e-4).
    """

    args_cls = DINOArgs
    transform_args_cls = DINOTransformArgs
    default_optimizer: ClassVar[OptimizerName] = "adamw"
    optim_defaults: ClassVar[dict[str, OptimDefaults]] = {
        "adamw": OptimDefaults(
            lr_per_256=5e-4, weight_decay=0.04, weight_decay_end=0.4
        ),
        "sgd": GENERIC_OPTIM_DEFAULTS["sgd"],
    }
    n_views = (2, None)
    method_args: DINOArgs

    def build_heads(self) -> None:
        embedding_model = self.embedding_model
        a = self.method_args
        self.student_head = DINOProjectionHead(
            embedding_model.embed_dim,
            hidden_dim=a.hidden_dim,
            bottleneck_dim=a.bottleneck_dim,
            output_dim=a.output_dim,
            batch_norm=a.batch_norm,
            norm_last_layer=a.norm_last_layer,
        )
        self.teacher_embedding_model = copy.deepcopy(embedding_model)
        self.teacher_head = copy.deepcopy(self.student_head)
        for p in itertools.chain(
            self.teacher_embedding_model.parameters(), self.teacher_head.parameters()
        ):
            p.requires_grad = False
        self.criterion = DINOLoss(a.output_dim, a.student_temp, a.center_momentum)
        # None when the run's length is unknown: the temperature stays at its start.
        self.teacher_temp_warmup_steps = self.epochs_to_steps(
            a.teacher_temp_warmup_epochs
        )
        self.freeze_last_layer_steps = (
            self.epochs_to_steps(a.freeze_last_layer_epochs) or 0
        )

    def trained_model(self) -> EmbeddingModel:
        return self.teacher_embedding_model

    def teacher_temp(self) -> float:
        """Teacher temperature at the current step: linear warmup, then constant."""
        a = self.method_args
        if self.teacher_temp_warmup_steps is None:
            return a.warmup_teacher_temp
        return linear_warmup(
            self.global_step,
            self.teacher_temp_warmup_steps,
            a.warmup_teacher_temp,
            a.teacher_temp,
        )

    def ema_momentum(self) -> float:
        """Teacher EMA momentum at the current step (cosine to ``momentum_end``)."""
        a = self.method_args
        return cosine_schedule(
            self.global_step, self.total_steps, a.momentum_start, a.momentum_end
        )

    def compute_loss(self, views: list[Tensor]) -> Tensor:
        global_views = views[:2]
        with torch.no_grad():
            teacher_out = forward_by_size(self._teacher_forward, global_views)
        student_out = forward_by_size(self._student_forward, views)
        return self.criterion(
            teacher_out, student_out, teacher_temp=self.teacher_temp()
        )

    def _teacher_forward(self, x: Tensor) -> Tensor:
        return self.teacher_head(self.teacher_embedding_model(x))

    def _student_forward(self, x: Tensor) -> Tensor:
        return self.student_head(self.embedding_model(x))

    def on_after_backward(self) -> None:
        if self.global_step < self.freeze_last_layer_steps:
            for p in self.student_head.last_layer.parameters():
                p.grad = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Runs after the optimizer step: the teacher follows the updated student.
        momentum = self.ema_momentum()
        update_ema(self.teacher_embedding_model, self.embedding_model, momentum)
        update_ema(self.teacher_head, self.student_head, momentum)
        self.log_dict({"teacher_temp": self.teacher_temp(), "ema_momentum": momentum})

    @classmethod
    def build_transform(cls, args: DINOTransformArgs) -> MultiViewTransform:
        size, norm = args.size(), args.normalize
        local_size = (
            scale_size(size, 96 / 224)
            if args.local_image_size is None
            else to_size(args.local_image_size)
        )
        # Colour jitter (0.4, 0.4, 0.2, 0.1) with p=0.8 and grayscale p=0.2 on all
        # crops; blur p=1.0 / 0.1 / 0.5 and solarize only on the second global crop.
        common: dict[str, Any] = {
            "jitter": (0.4, 0.4, 0.2, 0.1),
            "jitter_prob": 0.8,
            "grayscale_prob": 0.2,
        }
        scale = args.global_crop_scale
        global_1 = view_transform(size, norm, crop_scale=scale, blur_prob=1.0, **common)
        global_2 = view_transform(
            size, norm, crop_scale=scale, blur_prob=0.1, solarize_prob=0.2, **common
        )
        local = view_transform(
            local_size, norm, crop_scale=args.local_crop_scale, blur_prob=0.5, **common
        )
        return MultiViewTransform([global_1, global_2] + [local] * args.n_local_views)
