"""The embedding model: a backbone, globally pooled, optionally projected."""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from lightly_train.checkpoint import CUSTOM_PREFIX
from lightly_train.models.registry import build_backbone, feature_dim


class EmbeddingModel(nn.Module):
    """Maps a normalised float batch ``(N, 3, H, W)`` to embeddings ``(N, D)``.

    ``D`` is ``embed_dim`` when given (a linear projection on the pooled features),
    else the backbone's feature dimension.
    """

    def __init__(self, backbone: nn.Module, embed_dim: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        in_dim = feature_dim(backbone)
        self.embed_head: nn.Module = (
            nn.Linear(in_dim, embed_dim) if embed_dim is not None else nn.Identity()
        )
        self.embed_dim = embed_dim if embed_dim is not None else in_dim

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)  # (N, C) for the registry's backbones
        if features.ndim == 4:  # (N, C, H, W) from a custom backbone: pool it.
            features = features.mean(dim=(2, 3))
        return self.embed_head(features)


def model_name(model: str | nn.Module) -> str:
    """The checkpoint's name of a model: its registry name, or ``custom/<class>``."""
    if isinstance(model, str):
        return model
    return f"{CUSTOM_PREFIX}{type(model).__module__}.{type(model).__qualname__}"


def build_embedding_model(
    model: str | nn.Module,
    model_args: dict[str, Any] | None = None,
    embed_dim: int | None = None,
) -> EmbeddingModel:
    """Builds an embedding model from a registry name (random init), or around a
    copy of a custom backbone module.

    A custom backbone maps a float batch ``(N, 3, H, W)`` to features ``(N, D)``
    (or a feature map ``(N, D, h, w)``, mean-pooled). It may set ``feature_dim = D``
    to skip a probe forward on a 224 px batch, and must be picklable (cloudpickle)
    since Ray ships it to the workers.
    """
    if isinstance(model, nn.Module):
        return EmbeddingModel(copy.deepcopy(model), embed_dim=embed_dim)
    return EmbeddingModel(build_backbone(model, model_args), embed_dim=embed_dim)
