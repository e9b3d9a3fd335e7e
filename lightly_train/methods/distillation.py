"""Distillation: the embedding model learns to reproduce a frozen teacher's features.

Teacher and student see the same augmented view ("consistent teaching" of Beyer et
al., "Knowledge distillation: A good teacher is patient and consistent", CVPR 2022,
https://arxiv.org/abs/2106.05237). As there are no class logits to match, the
student's embedding is linearly projected to the teacher's dimension and regressed
onto the teacher's feature with the normalised MSE of BYOL (Grill et al. 2020, Eq. 2),
``2 - 2 cos(student, teacher)``.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from lightly_train.checkpoint import load_embedding_model
from lightly_train.errors import LightlyTrainError
from lightly_train.methods.method import Method, MethodArgs, forward_by_size
from lightly_train.methods.optim import OptimizerName
from lightly_train.methods.transforms import (
    MultiViewTransform,
    TransformArgs,
    view_transform,
)
from lightly_train.models.embedding_model import EmbeddingModel
from lightly_train.models.registry import build_backbone, list_models

TEACHER_KEY = "teacher."
# Prefixes of the torchvision classifiers that build_backbone removes; weights under
# them are expected in a full state_dict and ignored.
CLASSIFIER = ("fc.", "classifier.", "head.", "heads.")
HOW_TO_GIVE_A_TEACHER = (
    "Give it in method_args either as a lightly-train checkpoint, "
    "teacher='path/to/lightly-train.ckpt', or as a model from list_models() with a "
    "state_dict file, teacher='torchvision/resnet50', "
    "teacher_weights='path/to/weights.pth'."
)


class DistillationLoss(nn.Module):
    """Mean squared distance of L2-normalised features, ``2 - 2 cos(s, t)``.

    Example:
        >>> loss_fn = DistillationLoss()
        >>> loss = loss_fn(torch.randn(4, 32), torch.randn(4, 32))
    """

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Returns the loss averaged over the batch.

        Args:
            student: Projected student features, (N, D).
            teacher: Teacher features, (N, D); no gradient flows into them.
        """
        diff = F.normalize(student, dim=-1) - F.normalize(teacher.detach(), dim=-1)
        return diff.pow(2).sum(dim=-1).mean()


class DistillationArgs(MethodArgs):
    """Distillation method arguments.

    Attributes:
        teacher: A lightly-train checkpoint file, or a model name from
            ``list_models()`` together with ``teacher_weights``.
        teacher_weights: A ``state_dict`` file for the ``teacher`` model name, as
            saved by ``torch.save(model.state_dict(), path)``; classifier weights
            in it are ignored. Nothing is ever downloaded.
        teacher_model_args: Builder arguments of the ``teacher`` model name.
    """

    teacher: str | None = None
    teacher_weights: str | None = None
    teacher_model_args: dict[str, Any] = Field(default_factory=dict)


class DistillationTransformArgs(TransformArgs):
    """Distillation augmentation arguments.

    Attributes:
        crop_scale: Area range of the random resized crop ("inception crop").
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)


def load_teacher(args: DistillationArgs) -> EmbeddingModel:
    """Loads the frozen teacher described by ``args``, in eval mode.

    Raises:
        LightlyTrainError: When no teacher is given, or it cannot be loaded.
    """
    if args.teacher is None:
        raise LightlyTrainError(
            f"Distillation needs a teacher. {HOW_TO_GIVE_A_TEACHER}"
        )
    if Path(args.teacher).is_file():
        if args.teacher_weights is not None or args.teacher_model_args:
            raise LightlyTrainError(
                f"teacher '{args.teacher}' is a checkpoint, which holds its own "
                "weights and model arguments: remove teacher_weights and "
                "teacher_model_args."
            )
        teacher = load_embedding_model(args.teacher)
    elif args.teacher in list_models():
        if args.teacher_weights is None:
            raise LightlyTrainError(
                f"teacher '{args.teacher}' needs teacher_weights="
                "'path/to/weights.pth': lightly-train never downloads weights, and a "
                f"random teacher teaches nothing. {HOW_TO_GIVE_A_TEACHER}"
            )
        backbone = build_backbone(args.teacher, args.teacher_model_args)
        load_backbone_weights(backbone, args.teacher_weights, args.teacher)
        teacher = EmbeddingModel(backbone)
    else:
        raise LightlyTrainError(
            f"teacher '{args.teacher}' is neither an existing checkpoint file nor a "
            f"model from list_models(). {HOW_TO_GIVE_A_TEACHER}"
        )
    for p in teacher.parameters():
        p.requires_grad = False
    return teacher.eval()


def load_backbone_weights(backbone: nn.Module, path: str, model: str) -> None:
    """Loads a ``state_dict`` file into ``backbone``, ignoring classifier keys.

    Raises:
        LightlyTrainError: When the file is missing or unreadable, or its keys or
            shapes are not those of ``model``'s backbone.
    """
    if not Path(path).is_file():
        raise LightlyTrainError(f"teacher_weights '{path}' is not an existing file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError) as ex:
        raise LightlyTrainError(
            f"teacher_weights '{path}' could not be read as a torch file "
            f"({type(ex).__name__}: {str(ex).splitlines()[0]})."
        ) from ex
    if not isinstance(state, Mapping) or not all(
        isinstance(v, Tensor) for v in state.values()
    ):
        raise LightlyTrainError(
            f"teacher_weights '{path}' is not a state_dict (a dict of tensors, as "
            "saved by torch.save(model.state_dict(), path))."
        )
    try:
        result = backbone.load_state_dict(state, strict=False)
    except RuntimeError as ex:  # Shape mismatches raise even when not strict.
        raise LightlyTrainError(
            f"teacher_weights '{path}' do not fit '{model}': {ex}"
        ) from ex
    unexpected = [k for k in result.unexpected_keys if not k.startswith(CLASSIFIER)]
    for problem, keys in [
        ("lack", result.missing_keys),
        ("have unknown", unexpected),
    ]:
        if keys:
            raise LightlyTrainError(
                f"teacher_weights '{path}' are not weights of '{model}': they "
                f"{problem} {len(keys)} backbone keys ({_first_keys(keys)})."
            )


def _first_keys(keys: list[str], n: int = 5) -> str:
    more = f", ... {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


class Distillation(Method):
    """Trains the embedding model to reproduce a frozen teacher's features.

    ``training_step`` expects one or more views, each (B, 3, H, W); teacher and
    student see the same views. The teacher is fed the views normalised with the
    transform's ``normalize``; use the teacher's own normalisation there.
    The teacher is always in eval mode, gets no gradient, is not optimised, and
    its weights are left out of Lightning checkpoints (they are reloaded from
    ``teacher`` on resume).

    Optimizer defaults: AdamW, lr ``5e-4 * global_batch_size / 256``, weight decay
    0.04, 10 warmup epochs, cosine decay (DINO's AdamW values; Beyer et al. also
    train students with Adam and a cosine schedule).
    """

    args_cls = DistillationArgs
    transform_args_cls = DistillationTransformArgs
    default_optimizer: ClassVar[OptimizerName] = "adamw"
    n_views = (1, None)
    method_args: DistillationArgs

    def build_heads(self) -> None:
        embedding_model = self.embedding_model
        self.teacher = load_teacher(self.method_args)
        self.student_head = nn.Linear(embedding_model.embed_dim, self.teacher.embed_dim)
        self.criterion = DistillationLoss()

    def compute_loss(self, views: list[Tensor]) -> Tensor:
        with torch.no_grad():
            teacher = torch.cat(forward_by_size(self.teacher, views))  # (V*B, D_t)
        student = torch.cat(forward_by_size(self._student_forward, views))
        return self.criterion(student, teacher)

    def _student_forward(self, x: Tensor) -> Tensor:
        return self.student_head(self.embedding_model(x))  # (N, D_teacher)

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # Frozen batch norm statistics, no dropout.
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(TEACHER_KEY)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Restore the teacher from its source so a strict load_state_dict passes.
        state = checkpoint.setdefault("state_dict", {})
        for key, value in self.teacher.state_dict().items():
            state.setdefault(TEACHER_KEY + key, value)

    @classmethod
    def build_transform(cls, args: DistillationTransformArgs) -> MultiViewTransform:
        # Inception crop and flip, as in Beyer et al.; no colour distortion, which
        # would change what the teacher's features mean.
        view = view_transform(args.size(), args.normalize, crop_scale=args.crop_scale)
        return MultiViewTransform([view])
