"""Model registry and the embedding model built from it."""

from lightly_train.models.embedding_model import EmbeddingModel, build_embedding_model
from lightly_train.models.registry import build_backbone, build_full_model, list_models

__all__ = [
    "EmbeddingModel",
    "build_backbone",
    "build_embedding_model",
    "build_full_model",
    "list_models",
]
