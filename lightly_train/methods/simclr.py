"""SimCLR: contrastive learning of two augmented views.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, https://arxiv.org/abs/2002.05709.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from lightly_train.methods import distributed
from lightly_train.methods.method import Method, MethodArgs, forward_by_size
from lightly_train.methods.optim import OptimDefaults, OptimizerName
from lightly_train.methods.transforms import (
    MultiViewTransform,
    TransformArgs,
    view_transform,
)


class SimCLRProjectionHead(nn.Module):
    """The SimCLR projection head g: Linear -> BN -> ReLU -> Linear.

    The paper's head is an MLP with one hidden layer (Sec. 2.1) of 2048 units for a
    ResNet-50, with batch norm on the hidden layer as in the reference code, and a
    128-dimensional output (Sec. B.4).

    Args:
        input_dim: Dimension of the embeddings it projects.
        hidden_dim: Hidden layer width (paper: 2048).
        output_dim: Output dimension (paper: 128).
    """

    def __init__(self, input_dim: int, hidden_dim: int = 2048, output_dim: int = 128):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=False),  # BN's shift is the bias.
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (N, output_dim)


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR, Eq. 1).

    For ``2N`` projections of ``N`` images the positive of each is the other view of
    the same image and the negatives are the other ``2(N - 1)`` projections. Under
    DDP with more than one worker, negatives are gathered from all workers (with
    gradient), so ``N`` is the global batch size, as in the paper.

    Args:
        temperature: The ``tau`` of Eq. 1. Default 0.1, the best value for large
            batches in Table 5 and the reference code's ImageNet setting (0.5 is
            its CIFAR-10 setting).

    Example:
        >>> loss_fn = NTXentLoss()
        >>> loss = loss_fn(torch.randn(8, 128), torch.randn(8, 128))
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Returns the mean loss over both views of this worker's ``N`` images.

        Args:
            z0: Projections of the first views, (N, D).
            z1: Projections of the second views, (N, D), row ``i`` pairs with
                row ``i`` of ``z0``.
        """
        z0, z1 = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
        z0_all, z1_all = (
            distributed.gather_with_grad(z0),
            distributed.gather_with_grad(z1),
        )
        n = z0.shape[0]
        # Row i of this worker is row rank * n + i of the gathered tensors.
        labels = torch.arange(n, device=z0.device) + distributed.rank() * n
        is_self = F.one_hot(labels, num_classes=z0_all.shape[0]).bool()  # (N, W*N)
        logits_01 = z0 @ z1_all.T / self.temperature  # positives on "diagonal"
        logits_00 = (z0 @ z0_all.T / self.temperature).masked_fill(is_self, -torch.inf)
        logits_10 = z1 @ z0_all.T / self.temperature
        logits_11 = (z1 @ z1_all.T / self.temperature).masked_fill(is_self, -torch.inf)
        loss_0 = F.cross_entropy(torch.cat([logits_01, logits_00], dim=1), labels)
        loss_1 = F.cross_entropy(torch.cat([logits_10, logits_11], dim=1), labels)
        return (loss_0 + loss_1) / 2


class SimCLRArgs(MethodArgs):
    """SimCLR method arguments (paper defaults).

    Attributes:
        hidden_dim: Projection head hidden width.
        output_dim: Projection head output dimension.
        temperature: NT-Xent temperature.
    """

    hidden_dim: int = Field(default=2048, ge=1)
    output_dim: int = Field(default=128, ge=1)
    temperature: float = Field(default=0.1, gt=0)


class SimCLRTransformArgs(TransformArgs):
    """SimCLR augmentation arguments (Appendix A).

    Attributes:
        crop_scale: Area range of the random resized crop.
        color_jitter_strength: The ``s`` of the colour distortion; jitter is
            ``(0.8s, 0.8s, 0.8s, 0.2s)`` applied with probability 0.8.
        grayscale_prob: Probability of converting a view to grayscale.
        blur_prob: Probability of a Gaussian blur.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    color_jitter_strength: float = Field(default=1.0, ge=0)
    grayscale_prob: float = Field(default=0.2, ge=0, le=1)
    blur_prob: float = Field(default=0.5, ge=0, le=1)


class SimCLR(Method):
    """SimCLR: NT-Xent between the projections of two views of each image.

    ``training_step`` expects a batch of 2 views, each (B, 3, H, W).

    Optimizer defaults (Appendix B.1): LARS, lr ``0.075 * sqrt(global_batch_size)``
    (the paper's square-root scaling, which it finds better than its linear
    ``0.3 * B / 256`` for small batches and equals it at B = 4096), weight decay
    1e-6, 10 warmup epochs (at most 10% of the run), cosine decay. On the kNN
    proxy of ``benchmarks/train_knn.py`` (batch 64, 15 epochs) the square root
    gave 0.731 against 0.709 for the linear rule.
    """

    args_cls = SimCLRArgs
    transform_args_cls = SimCLRTransformArgs
    default_optimizer: ClassVar[OptimizerName] = "lars"
    optim_defaults: ClassVar[dict[str, OptimDefaults]] = {
        "lars": OptimDefaults(
            lr_per_256=1.2, weight_decay=1e-6, warmup_epochs=10, lr_scaling="sqrt"
        ),
    }
    n_views = (2, 2)
    min_batch_size = 2  # one image has no negatives: its NT-Xent is 0
    method_args: SimCLRArgs

    def build_heads(self) -> None:
        embedding_model = self.embedding_model
        self.projection_head = SimCLRProjectionHead(
            embedding_model.embed_dim,
            hidden_dim=self.method_args.hidden_dim,
            output_dim=self.method_args.output_dim,
        )
        self.criterion = NTXentLoss(temperature=self.method_args.temperature)

    def compute_loss(self, views: list[Tensor]) -> Tensor:
        z0, z1 = forward_by_size(self._forward, views)  # (B, D) each
        return self.criterion(z0, z1)

    def _forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.embedding_model(x))

    @classmethod
    def build_transform(cls, args: SimCLRTransformArgs) -> MultiViewTransform:
        s = args.color_jitter_strength
        view = view_transform(
            args.size(),
            args.normalize,
            crop_scale=args.crop_scale,
            jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
            jitter_prob=0.8,
            grayscale_prob=args.grayscale_prob,
            blur_prob=args.blur_prob,
        )
        return MultiViewTransform([view, view])
