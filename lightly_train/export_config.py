"""The typed arguments of ``export``, without torch, so ``--help`` and the CLI load
fast."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lightly_train.config import Config


class ExportConfig(Config):
    out: str = Field(description="Output file or URI, e.g. model.pt.")
    checkpoint: str = Field(description="lightly-train checkpoint, e.g. last.ckpt.")
    part: Literal["model", "embedding_model"] = Field(
        "model",
        description="model: the backbone as the plain torchvision model (its "
        "classifier untrained); embedding_model: backbone + optional embed_dim head.",
    )
    format: Literal["torch_state_dict", "torch_model"] = Field(
        "torch_state_dict",
        description="torch_state_dict: the weights; torch_model: the whole pickled "
        "module (load with weights_only=False).",
    )
    overwrite: bool = Field(False, description="Replace an existing output file.")
