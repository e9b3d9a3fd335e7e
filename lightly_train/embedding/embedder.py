"""The model stage: a stateful callable that Ray runs as an actor, one per device."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import ray
import torch

from lightly_train.checkpoint import embedding_model_from_entry

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Embedder:
    """Loads the checkpoint once; maps decoded image batches to embeddings.

    Args:
        checkpoint: The checkpoint's ``"lightly_train"`` dict, or a Ray object ref to
            it (so nodes without the checkpoint file get it from the object store).
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        num_threads: Torch CPU threads; the CPUs Ray reserved for this actor.
        model: The custom backbone module, for checkpoints of custom models.
    """

    def __init__(
        self,
        checkpoint: dict[str, Any] | ray.ObjectRef,
        device: str = "cpu",
        precision: str = "32-true",
        num_threads: int | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        if isinstance(checkpoint, ray.ObjectRef):
            checkpoint = ray.get(checkpoint)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device)
        self.model = embedding_model_from_entry(checkpoint, model).to(self.device)
        norm = checkpoint["normalize"]
        # (1, 3, 1, 1) so they broadcast over (B, 3, H, W)
        self.mean = torch.tensor(norm["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(norm["std"], device=self.device).view(1, 3, 1, 1)
        self.autocast_dtype = _AUTOCAST_DTYPES.get(precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"idx", "image" (B, H, W, 3) uint8, "error"}`` -> ``{"idx", "embedding"
        (B, D) float32, "error"}``; rows with an error get a zero vector."""
        ok = np.asarray(batch["error"]) == ""
        embeddings = None
        if ok.any():
            embeddings = self.embed(batch["image"][ok])
        dim = embeddings.shape[1] if embeddings is not None else self.model.embed_dim
        out = np.zeros((len(ok), dim), dtype=np.float32)
        if embeddings is not None:
            out[ok] = embeddings
        result = {"idx": batch["idx"], "embedding": out, "error": batch["error"]}
        if "filename" in batch:
            result["filename"] = batch["filename"]
        return result

    @torch.inference_mode()
    def embed(self, images: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 -> ``(B, D)`` float32 embeddings."""
        if not images.flags.writeable:  # torch wants writable memory
            images = images.copy()
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
        x = (x - self.mean) / self.std
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            embeddings = self.model(x)
        return embeddings.float().cpu().numpy()
