"""lightly-train: self-supervised pretraining and image embedding on Ray.

Example:
    >>> import lightly_train
    >>> lightly_train.embed(
    ...     out="embeddings.pth",
    ...     data="my_data_dir",
    ...     checkpoint="out/my_experiment/checkpoints/last.ckpt",
    ... )  # doctest: +SKIP
"""

from lightly_train._logging import setup_logging
from lightly_train.checkpoint import load_embedding_model
from lightly_train.embedding.pipeline import embed
from lightly_train.models import list_models

__all__ = ["embed", "list_models", "load_embedding_model"]

setup_logging()
