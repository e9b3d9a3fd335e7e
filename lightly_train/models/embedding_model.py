"""The embedding model: a backbone, globally pooled, optionally projected."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

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


def build_embedding_model(
    model: str, model_args: dict[str, Any] | None = None, embed_dim: int | None = None
) -> EmbeddingModel:
    """Builds a randomly initialised embedding model from a registry name."""
    return EmbeddingModel(build_backbone(model, model_args), embed_dim=embed_dim)
