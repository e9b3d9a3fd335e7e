"""The ``train`` driver: check everything, prepare ``out``, run Ray Train, export.

checks (driver) -> out/ -> TorchTrainer(N workers: Lightning + RayDDPStrategy)
  -> out/checkpoints/last.ckpt -> out/exported_models/exported_last.pt

On a laptop (``runtime.runs_here``) the one worker's ``fit_worker`` runs in this
process instead of Ray Train (``fitting``); ``outputs`` checks, clears and exports
what the run writes into ``out/``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightly_train._background import in_background
from lightly_train._cpu import log_bf16_hint
from lightly_train._signals import interrupts_raise
from lightly_train.config import validate_config
from lightly_train.data import storage
from lightly_train.data.files import list_image_files
from lightly_train.data.names import ImageFiles
from lightly_train.errors import LightlyTrainError
from lightly_train.runtime import (
    only_this_machine,
    ray_session,
    runs_here,
)
from lightly_train.training.config import TrainConfig
from lightly_train.training.fitting import fit, fit_here, interrupted_message
from lightly_train.training.outputs import check_out, export_backbone, prepare_out
from lightly_train.training.plan import WorkerPlan, plan_spec
from lightly_train.training.plots import plot_metrics
from lightly_train.training.progress import EpochLines

if TYPE_CHECKING:
    from torch import nn

    from lightly_train.training.worker import WorkerSpec


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSummary:
    """What a ``train`` run wrote."""

    out: Path
    checkpoint: Path  # out/checkpoints/last.ckpt
    exported: Path  # out/exported_models/exported_last.pt
    seconds: float


def train(
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] | list[str | os.PathLike[str]],
    model: str | nn.Module,
    method: str = "simclr",
    method_args: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    embed_dim: int | None = None,
    epochs: int = 100,
    batch_size: int = 128,
    num_workers: int | Literal["auto"] = "auto",
    devices: int | Literal["auto"] = "auto",
    num_nodes: int = 1,
    accelerator: Literal["auto", "cpu", "gpu"] = "auto",
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true",
    seed: int = 0,
    optim_args: dict[str, Any] | None = None,
    transform_args: dict[str, Any] | None = None,
    loggers: dict[str, Any] | None = None,
    resume_interrupted: bool = False,
    overwrite: bool = False,
    max_failures: int = 0,
    runner: Literal["auto", "ray", "local"] = "auto",
) -> TrainSummary:
    """Pretrains a model with self-supervised learning on the images under ``data``.

    Runs Lightning inside Ray Train: one worker per GPU (``devices`` x ``num_nodes``),
    or CPU workers when the cluster has no GPUs. Uses the Ray cluster at
    ``RAY_ADDRESS`` (as under ``ray job submit``) or starts a local Ray; on a
    laptop, Lightning runs in this process instead (``runner``).

    Args:
        out: Output directory. Gets ``checkpoints/last.ckpt`` (a lightly-train and
            Lightning checkpoint), ``exported_models/exported_last.pt`` (the
            backbone's torchvision state_dict), ``metrics.jsonl``, ``train.log`` and
            ``config.json``. On a cluster it must be on storage all nodes share.
        data: Directory with images, or a list of directories and image files.
        model: A name from ``lightly_train.list_models()``, or a custom backbone
            ``torch.nn.Module`` mapping ``(N, 3, H, W)`` to features ``(N, D)`` (or
            ``(N, D, h, w)``, mean-pooled), picklable, optionally with a
            ``feature_dim`` attribute. Its checkpoint then needs a fresh instance
            of it to load: ``embed(..., model=MyNet())``.
        method: A name from ``lightly_train.list_methods()``.
        method_args: Method arguments (e.g. ``{"temperature": 0.2}``).
        model_args: Model builder arguments (e.g. ``{"image_size": 64}`` for a ViT).
        embed_dim: Add a projection so embeddings have this size.
        epochs: Passes over the data.
        batch_size: Global batch size, split evenly over the workers.
        num_workers: Data loading processes per worker; ``"auto"`` sizes them from
            the CPUs.
        devices: Workers per node; ``"auto"`` uses every GPU (or one CPU worker).
        num_nodes: Number of nodes.
        accelerator: ``"cpu"``, ``"gpu"`` or ``"auto"``.
        precision: ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"`` (GPU only).
        seed: Random seed.
        optim_args: Optimizer arguments (``optimizer``, ``lr``, ``weight_decay``,
            ``warmup_steps``, ...); unset values take the method's paper defaults.
        transform_args: Augmentation arguments, at least ``image_size``.
        loggers: ``{"tensorboard": True}`` adds TensorBoard; jsonl is always on.
        resume_interrupted: Continue from ``out/checkpoints/last.ckpt`` with the
            same step, optimizer and scheduler state.
        overwrite: Remove the outputs of a former run in ``out`` first.
        max_failures: How many times Ray Train restarts the workers after a worker
            or node fails; each restart continues from ``out/checkpoints/last.ckpt``
            (the last finished epoch), so the run ends with the same weights as an
            undisturbed one. ``-1``: no limit. Node preemptions are always restarted.
        runner: ``"ray"``: Ray Train, on the cluster at ``RAY_ADDRESS`` or a local
            Ray started for the job; ``"local"``: Lightning in this process, one
            worker, no restarts; ``"auto"``: ``"local"`` when no Ray is
            initialized, ``RAY_ADDRESS`` is unset, the machine has at most 4 CPUs
            and no GPU, ``num_nodes=1``, ``max_failures=0`` and ``devices`` asks
            for one worker at most (a laptop, where starting Ray Train's workers
            costs more than it gives), else ``"ray"``.

    Example:
        >>> import lightly_train
        >>> lightly_train.train(
        ...     out="out/my_experiment", data="my_data_dir",
        ...     model="torchvision/resnet50", method="simclr", epochs=100,
        ... )  # doctest: +SKIP
    """
    return run(validate_config(TrainConfig, dict(locals())))


def run(config: TrainConfig) -> TrainSummary:
    """Runs ``train`` for a validated config."""
    start = time.perf_counter()
    if config.resume_interrupted and config.overwrite:
        raise LightlyTrainError(
            "Pass either resume_interrupted=True or overwrite=True, not both."
        )
    # torch, Lightning and Ray Train (5 s of imports on a laptop) load, and the
    # method is built once to check its arguments, while the images are listed
    # and Ray starts (as embed loads its checkpoint). A bad method or model
    # argument's error arrives after Ray's start-up, or before it when the data
    # or out is bad too: then it comes first, as it did before they overlapped.
    # In this process (runner="local") Ray Train is never imported.
    checking = in_background(check_method, config)
    try:
        files, out = check_data_and_out(config)
    except LightlyTrainError:
        if (error := checking.exception()) is not None:
            raise error from None
        raise
    here = trains_here(config)  # may wait for torch's import, to look for GPUs
    if not here:
        in_background(importlib.import_module, "ray.train.torch")
    with contextlib.nullcontext() if here else ray_session():
        checking.result()  # torch and Lightning are imported by now
        plan, spec = plan_spec(config, files, out, here)
        # Everything is checked: only now is anything written to out.
        resume_from = prepare_out(out, config.overwrite, config.resume_interrupted)
        spec = replace(spec, resume_from=str(resume_from) if resume_from else None)
        return fit_and_export(config, spec, plan, here, start)


def fit_and_export(
    config: TrainConfig, spec: WorkerSpec, plan: WorkerPlan, here: bool, start: float
) -> TrainSummary:
    """Trains (logging to ``out/train.log``), exports the backbone, plots."""
    from lightly_train.models.embedding_model import model_name
    from lightly_train.training.worker import log_to_file

    out = Path(spec.config["out"])
    with log_to_file(out / "train.log"):
        logger.info(
            f"Training {model_name(config.model)} with {config.method} on "
            f"{len(spec.paths)} images, "
            + (f"in this process on {plan.accelerator.upper()}" if here else
               f"{plan.num_workers} {plan.accelerator} worker(s)")
            + f", {spec.steps_per_epoch} steps/epoch."
        )  # fmt: skip
        if plan.accelerator == "cpu" and (here or only_this_machine()):
            log_bf16_hint(config.precision, "trains")
        with (
            interrupts_raise(),
            EpochLines(out / "metrics.jsonl", config.epochs, spec.steps_per_epoch,
                       spec.worker_batch_size * plan.num_workers),
        ):  # fmt: skip
            try:
                if here:
                    fit_here(spec, out)
                else:
                    fit(spec, plan, out, config.num_nodes, config.max_failures)
            except KeyboardInterrupt:
                logger.warning(interrupted_message(out))
                raise
        checkpoint = out / "checkpoints" / "last.ckpt"
        exported = export_backbone(
            checkpoint, out / "exported_models" / "exported_last.pt", config.model
        )
        plot = plot_metrics(out / "metrics.jsonl", out / "metrics.png")
        seconds = time.perf_counter() - start
        logger.info(
            f"Training done in {seconds:.1f} s. Checkpoint: '{checkpoint}'. "
            f"Exported backbone: '{exported}'."
            + (f" Loss and lr: '{plot}'." if plot else "")
        )
    return TrainSummary(out, checkpoint, exported, seconds)


def trains_here(config: TrainConfig) -> bool:
    """``runtime.runs_here``, and only for one node without restarts: Ray Train
    restarts workers and spans nodes, a process does neither."""
    one_process = config.num_nodes == 1 and config.max_failures == 0
    if config.runner == "local" and not one_process:
        raise LightlyTrainError(
            f"runner='local' trains in this process, without restarts and on one "
            f"node, but num_nodes={config.num_nodes} and max_failures="
            f"{config.max_failures}. Use runner='ray', or num_nodes=1 and "
            "max_failures=0."
        )
    if config.runner == "auto" and not one_process:
        return False
    return runs_here(config.runner, config.accelerator, config.devices)


def check_method(config: TrainConfig) -> None:
    """Builds the method once on the driver, so bad arguments fail before any
    worker starts; imports what the driver's training needs."""
    from lightly_train.methods import get_method
    from lightly_train.models import build_embedding_model
    from lightly_train.training import worker  # noqa: F401 - Lightning

    method_cls = get_method(config.method)
    if config.batch_size < method_cls.min_batch_size:
        raise LightlyTrainError(
            f"method='{config.method}' needs batch_size >= "
            f"{method_cls.min_batch_size}: its loss learns from the other images of "
            f"a batch, and with {config.batch_size} it is constant. Use "
            f"batch_size={method_cls.min_batch_size} or more."
        )
    method_cls.transform(config.transform_args)
    method_cls(
        build_embedding_model(config.model, config.model_args, config.embed_dim),
        config.method_args,
        config.optim_args,
        total_steps=1,
    )


def check_data_and_out(config: TrainConfig) -> tuple[ImageFiles, Path]:
    """The images to train on and the local ``out`` directory; writes nothing."""
    files = list_image_files(config.data)
    local_out = storage.local_path(config.out)
    if local_out is None:
        raise LightlyTrainError(
            f"out='{config.out}' is a URI; train writes checkpoints and logs to a "
            "directory. Use a local path, or on a cluster a shared filesystem mounted "
            "on every node (NFS, EFS, a mounted bucket). data may be a URI."
        )
    out = local_out.resolve()
    check_out(out, config.overwrite, config.resume_interrupted)
    return files, out
