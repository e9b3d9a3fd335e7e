"""The typed arguments of ``train``, shared by the CLI and ``lightly_train.train``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from lightly_train.config import Config, check_module


class TrainConfig(Config):
    out: str = Field(description="Output directory: checkpoints, logs, exports.")
    data: str | list[str] = Field(
        description="Directory with images, or a list of directories and image files."
    )
    model: Any = Field(
        description="Model to train, e.g. torchvision/resnet50 (see list_models); "
        "the Python API also takes a torch.nn.Module backbone."
    )
    method: str = Field("simclr", description="SSL method: dino, distillation, simclr.")
    method_args: dict[str, Any] | None = Field(
        None, description="Method arguments, e.g. method_args.temperature=0.2."
    )
    model_args: dict[str, Any] | None = Field(
        None,
        description="Model builder arguments, e.g. model_args.small_input=true (a "
        "3x3 stride-1 ResNet stem for 32-64 px images) or model_args.image_size=64 "
        "(a ViT).",
    )
    embed_dim: PositiveInt | None = Field(
        None, description="Project embeddings to this size; null keeps the model's."
    )
    epochs: PositiveInt = Field(100, description="Passes over the data.")
    batch_size: PositiveInt = Field(
        128, description="Global batch size, split evenly across workers."
    )
    num_workers: NonNegativeInt | Literal["auto"] = Field(
        "auto", description="Data loading processes per training worker."
    )
    devices: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Training workers per node: GPUs, or CPU workers without GPUs. "
        "auto: all GPUs of the cluster (split over num_nodes), or 1 CPU worker.",
    )
    num_nodes: PositiveInt = Field(1, description="Nodes; workers = devices x nodes.")
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="cpu, gpu, or auto (gpu if the cluster has any)."
    )
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = Field(
        "32-true",
        description="32-true, bf16-mixed (GPUs; CPUs with bf16 in hardware, "
        "AMX or AVX-512 BF16: about 2x as fast as 32-true), or 16-mixed (GPU only).",
    )
    seed: int = Field(0, description="Random seed.")
    optim_args: dict[str, Any] | None = Field(
        None, description="Optimizer arguments, e.g. optim_args.lr=0.01."
    )
    transform_args: dict[str, Any] | None = Field(
        None, description="Augmentation arguments, e.g. transform_args.image_size=64."
    )
    loggers: dict[str, Any] | None = Field(
        None,
        description="Loggers: jsonl is always on; loggers.tensorboard=true adds "
        "TensorBoard (needs tensorboard installed).",
    )
    resume_interrupted: bool = Field(
        False, description="Continue an interrupted run from out/checkpoints/last.ckpt."
    )
    overwrite: bool = Field(False, description="Replace the outputs of a former run.")
    max_failures: int = Field(
        0,
        ge=-1,
        description="Restart the workers this many times after a worker or node fails, "
        "each time from out/checkpoints/last.ckpt; -1: no limit. Preempted nodes are "
        "always restarted.",
    )

    runner: Literal["auto", "ray", "local"] = Field(
        "auto",
        description="Where training runs: ray (Ray Train: RAY_ADDRESS, or a local "
        "Ray started for the job), local (Lightning in this process, one worker), "
        "or auto (local on a machine of at most 4 CPUs and no GPU when there is "
        "no Ray to join, one node and max_failures=0, else ray).",
    )

    _model = field_validator("model")(check_module)

    @property
    def image_size(self) -> tuple[int, int]:
        """The training image size (height, width) from transform_args."""
        size = (self.transform_args or {}).get("image_size", 224)
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
