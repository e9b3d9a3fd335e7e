"""Where the workers' ``fit_worker`` runs: Ray Train's ``TorchTrainer`` (N workers,
restarts, nodes) or this process (a laptop); and how a failure or an interrupt
reads, with the way to continue from the last finished epoch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lightly_train._by_value import code_travels
from lightly_train._memory import ONE_ARENA
from lightly_train.errors import LightlyTrainError, find_cause
from lightly_train.training.config import TrainConfig
from lightly_train.training.plan import WorkerPlan

if TYPE_CHECKING:
    from lightly_train.training.worker import WorkerSpec


def fit(
    spec: WorkerSpec, plan: WorkerPlan, out: Path, num_nodes: int, max_failures: int
) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lightly_train.training.worker import train_worker

    trainer = TorchTrainer(
        train_worker,
        train_loop_config=spec.__dict__,
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.accelerator == "gpu",
            resources_per_worker={"CPU": plan.cpus_per_worker}
            | ({"GPU": 1} if plan.accelerator == "gpu" else {}),
            # Ray packs workers by default: spread them when asked for many nodes.
            placement_strategy="SPREAD" if num_nodes > 1 else "PACK",
        ),
        run_config=RunConfig(
            name="run",
            storage_path=str(out / ".ray_train"),
            # A restarted worker resumes from last.ckpt: see fit_worker.
            failure_config=FailureConfig(max_failures=max_failures),
            # The training loop runs in a thread of the worker: one malloc arena
            # keeps each step's activations' memory (see fit_worker).
            worker_runtime_env={"env_vars": ONE_ARENA},
        ),
    )
    try:
        with code_travels(spec.config["model"]):  # the workers' config is pickled
            trainer.fit()
    except Exception as ex:
        cause = user_error(ex)
        if cause is not None:
            raise cause from None
        raise TrainingFailedError(failure_message(ex, out)) from ex


def fit_here(spec: WorkerSpec, out: Path) -> None:
    """Lightning in this process, as one Ray Train worker would run it; torch's
    thread count and glibc's malloc settings are the caller's again afterwards."""
    import torch

    from lightly_train._logging import lightning_to_log_file
    from lightly_train._memory import give_back_freed_memory
    from lightly_train._signals import raise_if_interrupted
    from lightly_train.training.worker import fit_worker

    threads = torch.get_num_threads()
    try:
        with lightning_to_log_file():
            fit_worker(spec, TrainConfig(**spec.config), 0, 1, on_ray=False)
    except SystemExit:
        raise_if_interrupted()  # Lightning turns Ctrl-C into sys.exit(1)
        raise
    except LightlyTrainError:
        raise
    except Exception as ex:
        raise TrainingFailedError(failure_message(ex, out)) from ex
    finally:
        torch.set_num_threads(threads)
        give_back_freed_memory()


class TrainingFailedError(RuntimeError):
    """A worker or node failed more often than ``max_failures`` allows."""


def interrupted_message(out: Path) -> str:
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return "Training interrupted before its first epoch ended: nothing to resume."
    return (
        f"Training interrupted. '{last}' holds the last finished epoch: continue "
        "with the same arguments and resume_interrupted=True."
    )


def failure_message(ex: BaseException, out: Path) -> str:
    """What failed, in one line, and how to continue from the last finished epoch."""
    reason = (str(ex).strip().splitlines() or [type(ex).__name__])[0][:300]
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return f"Training failed before its first epoch ended ({reason})."
    return (
        f"Training failed ({reason}). '{last}' holds the last finished epoch: "
        "continue with resume_interrupted=True, or pass max_failures=N to restart "
        "the workers automatically."
    )


def user_error(ex: BaseException) -> LightlyTrainError | None:
    """The LightlyTrainError a worker raised, if that is why training failed."""
    cause = find_cause(ex, lambda err: isinstance(err, LightlyTrainError))
    return cause if isinstance(cause, LightlyTrainError) else None
