"""The typed arguments of ``embed``, shared by the CLI and ``lightly_train.embed``,
and what its "auto" batch size and JPEG decoding resolve to."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from lightly_train.config import Config, check_module
from lightly_train.embedding.writers import SHARDED_WRITERS, WRITERS

FORMATS = sorted([*WRITERS, *SHARDED_WRITERS])
AUTO_CPU_BATCH, AUTO_GPU_BATCH = 64, 512


class EmbedConfig(Config):
    out: str = Field(
        description="Output file or URI for the embeddings (a directory for "
        "parquet); written to a temp file beside it, then renamed."
    )
    data: str | list[str] = Field(
        description="A directory or URI prefix of images (searched recursively), a "
        "list of directories and image files, or a .txt/.parquet manifest."
    )
    checkpoint: str = Field(description="lightly-train checkpoint, e.g. last.ckpt.")
    format: str = Field(
        "torch",
        description=f"Output format: {', '.join(FORMATS)}; parquet writes a "
        "directory of part-NNNNN.parquet shards.",
    )
    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = Field(
        224,
        description="Images are resized to this size (bilinear, antialiased): int "
        "or [height, width].",
    )
    batch_size: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Images per model forward; auto: 64 on CPU (faster than 128 "
        "on 2 cores), 512 per GPU, at 224x224; other sizes as many pixels per "
        "batch (on GPUs, larger sizes only).",
    )
    num_workers: PositiveInt | Literal["auto"] = Field(
        "auto", description="Parallel image decode tasks; auto uses the free CPUs."
    )
    devices: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Model replicas: GPUs used in the cluster, or CPU actors when "
        "there are no GPUs; auto uses all GPUs, or CPU actors whose torch threads "
        "cover every CPU (2 CPUs: 2 x 1 thread, 16: 4 x 4).",
    )
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where the model runs: cpu, gpu, or auto (gpu if any)."
    )
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = Field(
        "32-true",
        description="32-true, bf16-mixed (GPUs; CPUs with bf16 in hardware, "
        "AMX or AVX-512 BF16: about 2x as fast as 32-true), or 16-mixed (GPU only).",
    )
    jpeg_decode: Literal["auto", "tasks", "model"] = Field(
        "auto",
        description="Where JPEGs are decoded: tasks (CPU decode tasks), model (the "
        "model actor decodes them on its device: nvJPEG on GPU; rotated, CMYK and "
        "other files still go to the tasks), or auto (model on GPU, else tasks).",
    )
    compile: bool = Field(False, description="Run the model through torch.compile.")
    overwrite: bool = Field(False, description="Replace an existing output file.")
    resume_interrupted: bool = Field(
        False,
        description="Continue an interrupted run with the same arguments: rows "
        "saved in .<out name>.embed-work beside out are not embedded again.",
    )
    on_error: Literal["skip", "raise"] = Field(
        "skip",
        description="An image that cannot be decoded: skip (left out of out, "
        "listed in <out>.failed.csv) or raise (the job fails, naming it, and "
        "nothing is written).",
    )
    shard_size: PositiveInt = Field(
        100_000, description="parquet: rows per part-NNNNN.parquet file in out/."
    )
    runner: Literal["auto", "ray", "local"] = Field(
        "auto",
        description="Where the stages run: ray (a Ray cluster: RAY_ADDRESS, or a "
        "local Ray started for the job), local (in this process), or auto (local "
        "on a machine of at most 4 CPUs and no GPU when there is no Ray to join, "
        "else ray).",
    )
    model: Any = Field(
        None,
        description="Python API only: a fresh instance of the custom backbone "
        "module a checkpoint of a custom model was trained from.",
    )

    @field_validator("model")
    @classmethod
    def _module_only(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "expected a torch.nn.Module (Python API only); the checkpoint "
                "already names its model"
            )
        return check_module(value)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"valid formats are {', '.join(FORMATS)}")
        return value

    @property
    def size(self) -> tuple[int, int]:
        """``image_size`` as (height, width)."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return self.image_size


def batch_size(
    requested: int | Literal["auto"],
    accelerator: str,
    num_files: int | None = None,
    image_size: tuple[int, int] = (224, 224),
) -> int:
    """``auto``: at 224x224, up to 64 on CPU (faster than 128 there,
    benchmarks/README.md), up to 512 per GPU: each batch costs Ray and the actor a
    fixed few milliseconds, and on an H200 a ResNet-50 at 224 px embedded 8,200
    images/s in batches of 512 against 6,700 in batches of 256 (benchmarks/README.md);
    its activations take a few GB. On CPU, other sizes get as many pixels per batch
    (at most 1024 images): the same activation memory, and for small images the
    fixed costs spread over more of them (mobilenet_v3_small at 64 px, one thread:
    1.12 ms per image in batches of 64, 0.72 in 256, 0.67 in 1024). On GPUs only
    larger sizes do (at least 8 images: 128 at 448 px), so the activations stay a
    few GB; smaller ones keep 512 (more per batch is not measured there).
    A job of fewer files gets batches that split it evenly, in multiples of 8:
    every batch is padded to this size (the same bits for an image in any batch),
    so 16 images in batches of 64 would pay for 64 forwards. It depends on the
    number of files and the image size only, so a resumed run (whose image size
    its fingerprint holds) uses the size of the run it continues."""
    if requested != "auto":
        return requested
    scale = 224 * 224 / (image_size[0] * image_size[1])
    if accelerator == "cpu":
        most = max(8, min(16 * AUTO_CPU_BATCH, 8 * round(AUTO_CPU_BATCH * scale / 8)))
    else:
        most = max(8, 8 * round(AUTO_GPU_BATCH * min(1.0, scale) / 8))
    if num_files is None or num_files <= 0:
        return most
    per_batch = math.ceil(num_files / math.ceil(num_files / most))
    return min(most, 8 * math.ceil(per_batch / 8))


def device_jpeg(config: EmbedConfig, accelerator: str) -> bool:
    """Whether the model's device decodes plain JPEGs (the tasks only read them)."""
    return config.jpeg_decode == "model" or (
        config.jpeg_decode == "auto" and accelerator == "gpu"
    )
