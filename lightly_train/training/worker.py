"""What each Ray Train worker runs: build the data and the method, then fit.

Everything the worker needs arrives in one plain dict (``WorkerSpec``) from the
driver, so the same function runs on a laptop and on any node of a cluster; and
in the driver's own process (``fit_worker(..., on_ray=False)``) on a laptop
without Ray.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightly_train._logging import info_level
from lightly_train._memory import keep_freed_memory
from lightly_train.methods import get_method
from lightly_train.methods.transforms import TransformArgs
from lightly_train.models import build_embedding_model
from lightly_train.models.embedding_model import model_name
from lightly_train.training.callbacks import CheckpointEntry, JsonlMetrics
from lightly_train.training.config import TrainConfig
from lightly_train.training.data import build_dataloader

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """The driver's decisions, shipped to every worker."""

    config: dict[str, Any]  # TrainConfig as a dict
    paths: list[str]  # sorted image files
    accelerator: str  # "cpu" or "gpu"
    worker_batch_size: int
    loader_workers: int
    torch_threads: int
    steps_per_epoch: int
    resume_from: str | None


@contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Sends lightly_train's and Lightning's log lines to ``path`` with timestamps,
    for the duration of the block (so runs in one process never share a log)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    )
    loggers = [logging.getLogger(n) for n in ("lightly_train", "lightning.pytorch")]
    for log in loggers:
        log.addHandler(handler)
    try:
        with info_level(loggers[0]):
            yield
    finally:
        for log in loggers:
            log.removeHandler(handler)
        handler.close()


def train_worker(spec_dict: dict[str, Any]) -> None:
    """The Ray Train loop: one call per worker; rank 0 writes the outputs."""
    import ray.train

    spec = WorkerSpec(**spec_dict)
    config = TrainConfig(**spec.config)
    out = Path(config.out)
    rank = ray.train.get_context().get_world_rank()
    world_size = ray.train.get_context().get_world_size()
    with log_to_file(out / "train.log") if rank == 0 else nullcontext():
        fit_worker(spec, config, rank, world_size)


def fit_worker(
    spec: WorkerSpec,
    config: TrainConfig,
    rank: int,
    world_size: int,
    on_ray: bool = True,
) -> None:
    """Trains ``config`` as worker ``rank`` of ``world_size``: in a Ray Train worker
    (``on_ray``: Ray's DDP strategy and environment), or alone in this process."""
    out = Path(config.out)
    resume_from = resume_checkpoint(out, spec.resume_from)
    torch.set_num_threads(spec.torch_threads)  # the CPUs its loaders leave it
    if spec.accelerator == "cpu":
        # Activations and gradients reuse freed memory instead of being mapped
        # and faulted in each step: resnet18 at 128 px, 2 threads, 57-60 -> 64
        # images/s per step.
        keep_freed_memory()
    lightning.seed_everything(config.seed, workers=True, verbose=False)

    method_cls = get_method(config.method)
    transform_args = method_cls.transform_args_cls.model_validate(
        config.transform_args or {}
    )
    loader = build_dataloader(
        spec.paths,
        method_cls.transform(transform_args),
        batch_size=spec.worker_batch_size,
        num_workers=spec.loader_workers,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        start_epoch=start_epoch(resume_from),
    )
    method = method_cls(
        build_embedding_model(config.model, config.model_args, config.embed_dim),
        config.method_args,
        config.optim_args,
        total_steps=config.epochs * spec.steps_per_epoch,
        steps_per_epoch=spec.steps_per_epoch,
        global_batch_size=spec.worker_batch_size * world_size,
    )
    # Convolutions train faster on NHWC memory (resnet18 SimCLR steps at 224 px
    # on 2 CPUs: 1.14-1.2x, benchmarks/README.md; tensor cores want it too). Inputs
    # stay NCHW: a convolution follows its weights' layout.
    method = method.to(memory_format=torch.channels_last)
    if rank == 0:
        resolved = {**spec.config, **method.resolved_args(), "world_size": world_size}
        resolved["model"] = model_name(config.model)
        resolved["transform_args"] = transform_args.model_dump(mode="json")
        (out / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    trainer = build_trainer(spec, config, transform_args, rank, world_size, on_ray)
    with warnings.catch_warnings():
        # Frozen teachers are kept in eval mode on purpose.
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
        # Our checkpoints hold tensors and plain values only: never unpickle code.
        trainer.fit(method, loader, ckpt_path=resume_from, weights_only=True)


def build_trainer(
    spec: WorkerSpec,
    config: TrainConfig,
    transform_args: TransformArgs,
    rank: int,
    world_size: int,
    on_ray: bool,
) -> lightning.Trainer:
    """Lightning's trainer with our checkpoints (``CheckpointEntry``: what embed
    needs to load them) and ``metrics.jsonl``."""
    out = Path(config.out)
    normalize = transform_args.normalize.model_dump(mode="json")
    every = max(1, min(50, spec.steps_per_epoch // 4))
    callbacks = [
        ModelCheckpoint(
            dirpath=out / "checkpoints", filename="{epoch}-{step}", save_last=True
        ),
        CheckpointEntry(
            model_name(config.model),
            config.model_args,
            config.embed_dim,
            transform_args.size(),
            {k: list(v) for k, v in normalize.items()},
        ),  # fmt: skip
        JsonlMetrics(out / "metrics.jsonl", spec.worker_batch_size * world_size, every),
    ]
    trainer = lightning.Trainer(
        max_epochs=config.epochs,
        accelerator=spec.accelerator,
        **(ray_strategy() if on_ray else {"devices": 1}),
        precision=config.precision,
        callbacks=callbacks,
        logger=loggers(config, out),
        # SimCLR's global batch norm; torch syncs batch norm on GPUs only.
        sync_batchnorm=world_size > 1 and spec.accelerator == "gpu",
        log_every_n_steps=every,
        enable_progress_bar=False,
        enable_model_summary=rank == 0,
        use_distributed_sampler=False,  # the loader's EpochSampler shards
        default_root_dir=out,
    )
    if on_ray:
        from ray.train.lightning import prepare_trainer

        trainer = prepare_trainer(trainer)
    return trainer


def ray_strategy() -> dict[str, Any]:
    """Lightning's arguments for a Ray Train worker (imported here only: a run in
    the driver's process needs none of Ray Train)."""
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    return {
        "devices": "auto",
        "strategy": RayDDPStrategy(),
        "plugins": [RayLightningEnvironment()],
    }


def resume_checkpoint(out: Path, resume_from: str | None) -> str | None:
    """The checkpoint this attempt continues from: the furthest one that loads in
    ``out/checkpoints``. Checkpoints exist at the start only when resuming, or when
    Ray Train restarts the workers after a failure (``max_failures``); a worker
    killed while saving can leave one cut off, or ``last.ckpt`` an epoch behind."""
    best: tuple[int, Path, int] | None = None
    folder = out / "checkpoints"
    paths = sorted(folder.glob("*.ckpt"), key=lambda p: p.name != "last.ckpt")
    for path in paths:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            step, epoch = int(state["global_step"]), int(state["epoch"])
        except Exception as ex:  # noqa: BLE001 - any unreadable file is skipped
            logger.warning(f"Not resuming from '{path}': it does not load ({ex}).")
            continue
        if best is None or step > best[0]:
            best = (step, path, epoch)
    if best is None:
        return resume_from
    step, path, epoch = best
    logger.info(f"Resuming from '{path}': epoch {epoch + 1} done, step {step}.")
    return str(path)


def start_epoch(checkpoint: str | None) -> int:
    """The epoch a run resumed from ``checkpoint`` starts at: the epochs Lightning
    counts as processed, which it passes to the sampler's ``set_epoch``."""
    if checkpoint is None:
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])


def loggers(config: TrainConfig, out: Path) -> list[Any] | bool:
    """TensorBoard when asked for (metrics.jsonl is always written)."""
    if not (config.loggers or {}).get("tensorboard"):
        return False
    from lightning.pytorch.loggers import TensorBoardLogger

    return [TensorBoardLogger(save_dir=out, name="tensorboard", version="")]


def spec_dict(spec: WorkerSpec) -> dict[str, Any]:
    return asdict(spec)
