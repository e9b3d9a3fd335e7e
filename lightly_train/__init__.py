"""lightly-train: self-supervised pretraining and image embedding on Ray.

Example:
    >>> import lightly_train
    >>> lightly_train.train(
    ...     out="out/my_experiment", data="my_data_dir", model="torchvision/resnet50"
    ... )  # doctest: +SKIP
    >>> lightly_train.embed(
    ...     out="embeddings.pth",
    ...     data="my_data_dir",
    ...     checkpoint="out/my_experiment/checkpoints/last.ckpt",
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightly_train.checkpoint import load_embedding_model
    from lightly_train.embedding.pipeline import embed
    from lightly_train.exporting import export
    from lightly_train.methods import list_methods
    from lightly_train.models import list_models
    from lightly_train.training.train import train

# Imported on first use: Ray's decode workers import this package but need no torch.
_API = {
    "embed": "lightly_train.embedding.pipeline",
    "export": "lightly_train.exporting",
    "list_methods": "lightly_train.methods",
    "list_models": "lightly_train.models",
    "load_embedding_model": "lightly_train.checkpoint",
    "train": "lightly_train.training.train",
}

__all__ = [
    "embed",
    "export",
    "list_methods",
    "list_models",
    "load_embedding_model",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lightly_train' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
