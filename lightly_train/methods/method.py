"""The common base of all self-supervised methods."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import lightning
import torch
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR

from lightly_train.methods.args import StrictArgs, parse_args
from lightly_train.methods.optim import (
    GENERIC_OPTIM_DEFAULTS,
    OptimArgs,
    OptimDefaults,
    OptimizerName,
    build_optimizer,
    cosine_schedule,
    set_weight_decay,
    warmup_cosine,
)
from lightly_train.methods.transforms import MultiViewTransform, TransformArgs
from lightly_train.models.embedding_model import EmbeddingModel

# SimCLR's ablations and DINO's reference schedule are 100 epochs. Without
# steps_per_epoch, a paper's "N epochs" is read as N% of training.
REFERENCE_EPOCHS = 100
# The papers' 10 warmup epochs are 10% of their 100-epoch runs. A default warmup
# never takes more of a run than that, so that every run, however short, decays.
MAX_WARMUP_FRACTION = 0.1


class MethodArgs(StrictArgs):
    """Base of the per-method argument models (``SimCLRArgs``, ``DINOArgs``, ...)."""


class Method(lightning.LightningModule):
    """A self-supervised method training ``embedding_model``.

    Subclasses set the class attributes and implement ``compute_loss`` and
    ``build_transform``. The outer training loop:

    1. builds the data transform with ``Method.transform(transform_args)``; each
       image becomes a list of views, and a default collate turns a batch into
       ``list[Tensor]``, view ``i`` of shape ``(B, 3, h_i, w_i)``;
    2. builds the method with ``total_steps`` (optimizer steps of the whole run,
       i.e. ``epochs * steps_per_epoch``) so that warmups and cosine schedules fit;
    3. saves ``method.embedding_model.state_dict()`` as the trained model.

    Args:
        embedding_model: The model to train; ``self.embedding_model`` is it.
        method_args: Method arguments, validated into ``cls.args_cls``.
        optim_args: Optimizer arguments, validated into ``OptimArgs``; unset values
            take the method's paper defaults.
        total_steps: Optimizer steps of the whole run; without it the learning
            rate is constant after warmup and step-based schedules stay at their
            start values.
        steps_per_epoch: Optimizer steps per epoch, to convert epoch-valued
            arguments to steps. Without it an epoch is ``total_steps / 100``.
        global_batch_size: Batch size summed over all workers, for the linear
            learning-rate scaling rule of the method (``OptimArgs.lr``).

    Example:
        >>> from lightly_train.methods import get_method
        >>> from lightly_train.models import build_embedding_model
        >>> method_cls = get_method("simclr")
        >>> transform = method_cls.transform({"image_size": 96})
        >>> method = method_cls(
        ...     build_embedding_model("torchvision/resnet18"),
        ...     total_steps=1000,
        ...     global_batch_size=256,
        ... )
    """

    args_cls: ClassVar[type[MethodArgs]] = MethodArgs
    transform_args_cls: ClassVar[type[TransformArgs]] = TransformArgs
    default_optimizer: ClassVar[OptimizerName] = "adamw"
    optim_defaults: ClassVar[Mapping[str, OptimDefaults]] = GENERIC_OPTIM_DEFAULTS
    # (min, max) number of views training_step accepts; max None = unbounded.
    n_views: ClassVar[tuple[int, int | None]] = (1, None)
    # Smallest global batch whose loss is not constant (SimCLR's negatives are the
    # batch's other images).
    min_batch_size: ClassVar[int] = 1

    def __init__(
        self,
        embedding_model: EmbeddingModel,
        method_args: Mapping[str, Any] | None = None,
        optim_args: Mapping[str, Any] | None = None,
        total_steps: int | None = None,
        *,
        steps_per_epoch: int | None = None,
        global_batch_size: int = 256,
    ) -> None:
        super().__init__()
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}.")
        if global_batch_size < 1:
            raise ValueError(
                f"global_batch_size must be positive, got {global_batch_size}."
            )
        self.embedding_model = embedding_model
        self.method_args = parse_args(self.args_cls, method_args, "method_args")
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.optim_args = self._resolve_optim_args(optim_args, global_batch_size)
        self.build_heads()

    def build_heads(self) -> None:
        """Builds the method's heads, teachers and losses (subclasses); runs at the
        end of ``__init__``, when the arguments are validated and resolved."""

    def epochs_to_steps(self, epochs: float) -> int | None:
        """Converts a paper's epoch count to optimizer steps of this run.

        Returns None when neither ``steps_per_epoch`` nor ``total_steps`` is known.
        """
        if self.steps_per_epoch:
            steps = round(epochs * self.steps_per_epoch)
        elif self.total_steps:
            steps = round(epochs * self.total_steps / REFERENCE_EPOCHS)
        else:
            return None
        return min(steps, self.total_steps) if self.total_steps else steps

    def _resolve_optim_args(
        self, optim_args: Mapping[str, Any] | None, global_batch_size: int
    ) -> OptimArgs:
        args = parse_args(OptimArgs, optim_args, "optim_args")
        name = args.optimizer or self.default_optimizer
        defaults = self.optim_defaults.get(name, GENERIC_OPTIM_DEFAULTS[name])
        warmup = args.warmup_steps
        if warmup is None and args.warmup_epochs is not None:
            warmup = self.epochs_to_steps(args.warmup_epochs) or 0
        elif warmup is None:  # the paper's warmup, at most a tenth of the run
            warmup = self.epochs_to_steps(defaults.warmup_epochs) or 0
            if self.total_steps is not None:
                warmup = min(warmup, int(MAX_WARMUP_FRACTION * self.total_steps))
        if self.total_steps is not None:  # what the user asked, within the run
            warmup = min(warmup, self.total_steps)
        lr = defaults.lr(global_batch_size)
        weight_decay = (
            defaults.weight_decay if args.weight_decay is None else args.weight_decay
        )
        weight_decay_end = args.weight_decay_end
        if weight_decay_end is None:
            weight_decay_end = defaults.weight_decay_end
        return args.model_copy(
            update={
                "optimizer": name,
                "lr": lr if args.lr is None else args.lr,
                "weight_decay": weight_decay,
                "weight_decay_end": weight_decay
                if weight_decay_end is None
                else weight_decay_end,
                "warmup_steps": warmup,
            }
        )

    def resolved_args(self) -> dict[str, Any]:
        """The method and optimizer arguments in use, as plain dicts (for ``out/``)."""
        return {
            "method_args": self.method_args.model_dump(mode="json"),
            "optim_args": self.optim_args.model_dump(mode="json"),
        }

    @classmethod
    def transform(
        cls, transform_args: Mapping[str, Any] | TransformArgs | None = None
    ) -> MultiViewTransform:
        """Returns the method's transform: PIL image -> list of normalised views.

        Args:
            transform_args: A dict validated into ``cls.transform_args_cls`` (or an
                instance of it); at least ``image_size`` (int or
                ``[height, width]``) and ``normalize`` (``{"mean": [...],
                "std": [...]}``).
        """
        args = parse_args(cls.transform_args_cls, transform_args, "transform_args")
        return cls.build_transform(args)

    @classmethod
    def build_transform(cls, args: Any) -> MultiViewTransform:
        """Builds the transform from validated ``args``."""
        raise NotImplementedError

    def compute_loss(self, views: list[Tensor]) -> Tensor:
        """Returns the scalar loss of one batch of views, each (B, 3, h, w)."""
        raise NotImplementedError

    def weight_decay(self, step: int) -> float:
        """Weight decay at optimizer ``step``: a half cosine from ``weight_decay``
        to ``weight_decay_end`` over the run (constant when they are equal)."""
        args = self.optim_args
        assert args.weight_decay is not None and args.weight_decay_end is not None
        return cosine_schedule(
            step, self.total_steps, args.weight_decay, args.weight_decay_end
        )

    def trained_model(self) -> EmbeddingModel:
        """The model that training produces, which checkpoints and exports hold:
        ``embedding_model`` unless a method evaluates another (DINO's teacher)."""
        return self.embedding_model

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.optim_args.weight_decay_end != self.optim_args.weight_decay:
            for optimizer in self.trainer.optimizers:
                set_weight_decay(optimizer, self.weight_decay(self.global_step))

    def on_fit_start(self) -> None:
        # Lightning keeps each module's mode, and a model loaded from a checkpoint
        # is in eval mode; methods override train() for modules that stay frozen.
        self.train()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """One step on ``batch``: a list of views, view ``i`` a (B, 3, h_i, w_i) tensor.

        Logs ``train_loss``, averaged over workers.
        """
        views = self._check_views(batch)
        loss = self.compute_loss(views)
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            sync_dist=True,
            batch_size=views[0].shape[0],
        )
        return loss

    def _check_views(self, batch: Sequence[Tensor]) -> list[Tensor]:
        low, high = self.n_views
        expected = f"{low}" if low == high else f"{low} to {high or 'any number of'}"
        if not isinstance(batch, (list, tuple)) or not all(
            isinstance(v, Tensor) and v.ndim == 4 for v in batch
        ):
            raise ValueError(
                f"{type(self).__name__} expects a batch that is a list of {expected} "
                "views, each a (B, 3, H, W) tensor, as collated from "
                f"{type(self).__name__}.transform(); got {type(batch).__name__}."
            )
        if len(batch) < low or (high is not None and len(batch) > high):
            raise ValueError(
                f"{type(self).__name__} expects {expected} views, got {len(batch)}."
            )
        return list(batch)

    def configure_optimizers(self) -> dict[str, Any]:
        args = self.optim_args
        assert args.lr is not None and args.warmup_steps is not None
        optimizer = build_optimizer(self.parameters(), args)
        schedule = partial(
            warmup_cosine,
            warmup_steps=args.warmup_steps,
            total_steps=self.total_steps,
            end_factor=args.min_lr / args.lr,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": LambdaLR(optimizer, schedule),
                "interval": "step",
            },
        }


def forward_by_size(
    model: Callable[[Tensor], Tensor], views: Sequence[Tensor]
) -> list[Tensor]:
    """Returns ``model`` of each view, with one forward per run of equally sized
    views, so that batch norm sees all of them together.
    """
    outputs: list[Tensor] = []
    for _, group in itertools.groupby(views, key=lambda v: v.shape):
        same_size = list(group)
        outputs += model(torch.cat(same_size)).chunk(len(same_size))
    return outputs
