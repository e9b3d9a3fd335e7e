"""Augmented views for self-supervised training.

A method's transform maps one PIL image to a list of normalised float tensors, one
per view, each ``(3, h, w)``. A default collate of a batch of such lists gives the
``list[Tensor]`` of ``(B, 3, h, w)`` views that ``Method.training_step`` expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from pydantic import Field
from torch import Tensor
from torchvision.transforms import v2

from lightly_train.checkpoint import IMAGENET_NORMALIZE
from lightly_train.methods.args import StrictArgs

Size = tuple[int, int]


class NormalizeArgs(StrictArgs):
    """Per-channel mean and std of the float image in [0, 1]; ImageNet by default."""

    mean: tuple[float, float, float] = tuple(IMAGENET_NORMALIZE["mean"])  # type: ignore[assignment]
    std: tuple[float, float, float] = tuple(IMAGENET_NORMALIZE["std"])  # type: ignore[assignment]


class TransformArgs(StrictArgs):
    """Arguments every method's transform takes.

    Attributes:
        image_size: Output size of the (global) views, an int or ``[height, width]``.
        normalize: Mean and std used to normalise the views.
    """

    image_size: int | tuple[int, int] = Field(default=224)
    normalize: NormalizeArgs = NormalizeArgs()

    def size(self) -> Size:
        """``image_size`` as ``(height, width)``."""
        return to_size(self.image_size)


def to_size(size: int | tuple[int, int]) -> Size:
    """An int or ``(height, width)`` as ``(height, width)``."""
    return (size, size) if isinstance(size, int) else size


def scale_size(size: Size, factor: float) -> Size:
    """Scales ``(height, width)`` by ``factor``, keeping each side at least 1."""
    return (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))


class MultiViewTransform:
    """Applies each view transform to the same image; picklable for data workers.

    Args:
        views: One callable per view, PIL image -> ``(3, h, w)`` float tensor.
    """

    def __init__(self, views: Sequence[Callable[[Image.Image], Tensor]]) -> None:
        self.views = list(views)

    def __call__(self, image: Image.Image) -> list[Tensor]:
        if image.mode != "RGB":  # Grayscale, palette or RGBA files.
            image = image.convert("RGB")
        return [view(image) for view in self.views]

    def __repr__(self) -> str:
        views = ",\n".join(f"  {v!r}" for v in self.views)
        return f"{type(self).__name__}([\n{views}\n])"


def view_transform(
    size: Size,
    normalize: NormalizeArgs,
    *,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    flip_prob: float = 0.5,
    jitter: tuple[float, float, float, float] | None = None,
    jitter_prob: float = 0.8,
    grayscale_prob: float = 0.0,
    blur_prob: float = 0.0,
    solarize_prob: float = 0.0,
) -> v2.Compose:
    """Builds one view: crop, flip, colour, blur, solarize, then normalise.

    Args:
        size: Output ``(height, width)``.
        normalize: Mean and std applied last.
        crop_scale: Area range of ``RandomResizedCrop`` (aspect ratio 3/4 to 4/3).
        flip_prob: Horizontal flip probability.
        jitter: Brightness, contrast, saturation, hue of ``ColorJitter``, or None.
        jitter_prob: Probability of applying the colour jitter.
        grayscale_prob: Probability of converting to grayscale.
        blur_prob: Probability of a Gaussian blur with sigma in [0.1, 2.0] and a
            kernel of about 10% of the view size (SimCLR, Appendix A).
        solarize_prob: Probability of solarizing at threshold 128 (BYOL, DINO).
    """
    steps: list[Callable] = [
        v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
        v2.RandomHorizontalFlip(p=flip_prob),
    ]
    if jitter is not None and jitter_prob > 0:
        steps.append(v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_prob))
    if grayscale_prob > 0:
        steps.append(v2.RandomGrayscale(p=grayscale_prob))
    if blur_prob > 0:
        kernel = max(3, int(0.1 * min(size)) // 2 * 2 + 1)  # odd, ~10% of the side
        blur = v2.GaussianBlur(kernel_size=kernel, sigma=(0.1, 2.0))
        steps.append(v2.RandomApply([blur], p=blur_prob))
    if solarize_prob > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize_prob))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(normalize.mean), std=list(normalize.std)),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)
