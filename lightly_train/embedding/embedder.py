"""The model stage: a stateful callable that Ray runs as an actor, one per device."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
import ray
import torch

from lightly_train._memory import keep_freed_memory
from lightly_train.checkpoint import embedding_model_from_entry

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Embedder:
    """Loads the checkpoint once; maps decoded image batches to embeddings.

    The model and its input are channels_last (NHWC), which convolutions run
    faster on CPU (1.6-1.9x for resnets on 2 cores, see ``benchmarks/README.md``)
    and on GPU tensor cores, and BatchNorms are folded into the convolutions
    before them (``fold_batch_norms``). On CUDA, batches go to the device as uint8
    through a pinned buffer (one per thread and CUDA stream, so two calls in flight
    overlap copies with compute) and are normalised there.

    Args:
        checkpoint: The checkpoint's ``"lightly_train"`` dict, or a Ray object ref to
            it (so nodes without the checkpoint file get it from the object store).
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        num_threads: Torch CPU threads.
        model: The custom backbone module, for checkpoints of custom models.
        compile: Run the model through ``torch.compile``.
        batch_size: Pad smaller batches to this many images (repeating the last)
            before the forward pass. Kernels can depend on the batch's size (on
            CPU, one image takes another path than several), so only then is each
            image's embedding the same bits whatever else shares its batch: a
            resumed run's output equals an uninterrupted one's.
        image_size: ``(height, width)`` of the images; needed for batches of
            JPEG bytes (``decode_batch(..., device_jpeg=True)``).

    Example:
        >>> embedder = Embedder(load_checkpoint_entry("last.ckpt"))  # doctest: +SKIP
        >>> embedder.embed(np.zeros((2, 224, 224, 3), np.uint8)).shape  # doctest: +SKIP
        (2, 512)
    """

    def __init__(
        self,
        checkpoint: dict[str, Any] | ray.ObjectRef,
        device: str = "cpu",
        precision: str = "32-true",
        num_threads: int | None = None,
        model: torch.nn.Module | None = None,
        compile: bool = False,
        batch_size: int | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        if isinstance(checkpoint, ray.ObjectRef):
            checkpoint = ray.get(checkpoint)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults per batch: 16-24% on 2 CPUs
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes
            torch.set_float32_matmul_precision("high")  # TF32 for 32-true
        model_ = embedding_model_from_entry(checkpoint, model)
        self.embed_dim = model_.embed_dim
        model_.backbone = fold_batch_norms(model_.backbone)  # the head: untraced
        model_ = model_.to(self.device)
        self.model = model_.to(memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)
        norm = checkpoint["normalize"]
        # (x / 255 - mean) / std as x * scale - shift: two passes over the batch
        # in place instead of four, half the time (2 ms per 64 images at 224 px
        # on one CPU thread). (1, 3, 1, 1), broadcast over (B, 3, H, W).
        mean = torch.tensor(norm["mean"], dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(norm["std"], dtype=torch.float64).view(1, 3, 1, 1)
        self.scale = (1 / (255 * std)).float().to(self.device)
        self.shift = (mean / std).float().to(self.device)
        self.autocast_dtype = _AUTOCAST_DTYPES.get(precision)
        self.batch_size = batch_size
        self.image_size = image_size
        self._local = threading.local()  # pinned buffer and stream of each thread

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"idx", "image" (B, H, W, 3) uint8, "error"}`` or, from
        ``decode_batch(..., device_jpeg=True)``, ``{"idx", "jpeg", "jpeg_area",
        "pixels", "error"}`` -> ``{"idx", "embedding" (B, D) float32, "error"}``;
        rows with an error get a zero vector."""
        errors = np.asarray(batch["error"]).astype(object)
        with self._stream():
            if "jpeg" in batch:
                images = self._assemble(batch, errors)
            else:
                images = self._to_device(batch["image"])  # (B, 3, H, W) uint8
            ok = errors == ""
            out = np.zeros((len(ok), self.embed_dim), dtype=np.float32)
            if ok.any():
                rows = torch.from_numpy(np.flatnonzero(ok)).to(self.device)
                out[ok] = self._forward(images[rows] if not ok.all() else images)
        return {"idx": batch["idx"], "embedding": out, "error": errors.astype(str)}

    def embed(self, images: np.ndarray) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 -> ``(B, D)`` float32 embeddings."""
        with self._stream():
            return self._forward(self._to_device(images))

    @torch.inference_mode()
    def _forward(self, images: torch.Tensor) -> np.ndarray:
        n = len(images)
        if self.batch_size is not None and n < self.batch_size:
            pad = images[-1:].expand(self.batch_size - n, *images.shape[1:])
            images = torch.cat([images, pad])
        # A no-op unless a subset of rows was taken; float() keeps the strides.
        x = images.contiguous(memory_format=torch.channels_last)
        x = x.float().mul_(self.scale).sub_(self.shift)
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            embeddings = self.model(x)
        return embeddings[:n].float().cpu().numpy()  # .cpu() waits for the stream

    def _assemble(
        self, batch: dict[str, np.ndarray], errors: np.ndarray
    ) -> torch.Tensor:
        """A batch of JPEG bytes (decoded here, on the device) and of rows the CPU
        decoded -> ``(B, 3, H, W)`` uint8 on the device, NHWC memory. A row that
        no decoder reads gets its error in ``errors``."""
        # torchvision.io: imported where it is used, not by every CPU actor.
        from lightly_train.data.device_decode import decode_on_device

        if self.image_size is None:
            raise ValueError("Embedder(image_size=...) is needed for JPEG batches.")
        height, width = self.image_size
        jpeg, pixels = batch["jpeg"], batch["pixels"]
        images = torch.zeros(
            (len(jpeg), height, width, 3), dtype=torch.uint8, device=self.device
        ).permute(0, 3, 1, 2)
        rows = [i for i, data in enumerate(pixels) if len(data) > 0]
        if rows:
            host = np.frombuffer(b"".join(pixels[rows]), dtype=np.uint8)
            images[rows] = self._to_device(host.reshape(len(rows), height, width, 3))
        decode_on_device(jpeg, images, errors, batch["jpeg_area"])
        return images

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` uint8 on the device, whose
        memory is NHWC: channels_last without a copy."""
        if not images.flags.writeable:  # torch wants writable memory
            images = images.copy()
        x = torch.from_numpy(np.ascontiguousarray(images))
        if self.device.type == "cuda":
            # One pinned buffer per thread, as large as the largest batch yet
            # (pinning memory is slow: never per batch).
            pinned, copied = getattr(self._local, "pinned", (None, None))
            if (
                pinned is None
                or pinned.shape[1:] != x.shape[1:]
                or len(pinned) < len(x)
            ):
                pinned = torch.empty_like(x).pin_memory()
                copied = torch.cuda.Event()
                self._local.pinned = (pinned, copied)
            copied.synchronize()  # the previous copy out of this buffer is done
            staged = pinned[: len(x)]
            staged.copy_(x)
            x = staged.to(self.device, non_blocking=True)
            copied.record()
        return x.permute(0, 3, 1, 2)

    def _stream(self) -> contextlib.AbstractContextManager[Any]:
        """This thread's CUDA stream, so concurrent calls overlap; nothing on CPU."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        return torch.cuda.stream(stream)


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm that follows a convolution
    folded into that convolution's weights: the same function (to float rounding,
    about 1e-6 relative), one pass over the activations fewer per layer (resnets
    embed 15-18% faster on 2 CPUs). A model that ``torch.fx`` cannot trace (e.g.
    with data-dependent control flow) is returned as it is."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model.eval())
    except Exception:  # noqa: BLE001 - tracing fails in many ways; unfolded works
        return model
