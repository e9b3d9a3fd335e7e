"""Lightning callbacks that shape ``out/``: the checkpoint entry and metrics.jsonl."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning
from lightning.pytorch.callbacks import Callback

from lightly_train.checkpoint import KEY, checkpoint_entry
from lightly_train.data.publish import atomic_path
from lightly_train.methods.method import Method


class CheckpointEntry(Callback):
    """Adds the ``"lightly_train"`` entry to every Lightning checkpoint, so that
    ``last.ckpt`` is both a Lightning checkpoint and a lightly-train checkpoint."""

    def __init__(
        self,
        model: str,
        model_args: dict[str, Any] | None,
        embed_dim: int | None,
        image_size: tuple[int, int],
        normalize: dict[str, list[float]],
    ) -> None:
        self.describe = {
            "model_name": model,
            "model_args": model_args,
            "embed_dim": embed_dim,
            "image_size": image_size,
            "normalize": normalize,
        }

    def on_save_checkpoint(
        self,
        trainer: lightning.Trainer,
        pl_module: lightning.LightningModule,
        checkpoint: dict[str, Any],
    ) -> None:
        assert isinstance(pl_module, Method)
        model = pl_module.trained_model()  # DINO: the teacher
        checkpoint[KEY] = checkpoint_entry(model, **self.describe)


def row_step(line: str) -> float:
    """The step of a metrics.jsonl row; infinite for a row cut off mid-write."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError):
        return math.inf


class JsonlMetrics(Callback):
    """Appends one JSON object per logged step and per epoch to ``path`` (rank 0).

    Step rows: step, epoch, loss, lr, images_per_s (global, since the last row).
    """

    def __init__(self, path: Path, global_batch_size: int, every_n_steps: int) -> None:
        self.path = path
        self.global_batch_size = global_batch_size
        self.every_n_steps = every_n_steps
        self._last = (0, time.perf_counter())

    def on_train_start(self, trainer: lightning.Trainer, *args: Any) -> None:
        self._last = (trainer.global_step, time.perf_counter())
        if trainer.is_global_zero and self.path.exists():
            # A restart after a failure redoes the steps past its checkpoint: drop
            # their rows, so the file is the history of the weights it ends with.
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [ln for ln in lines if row_step(ln) <= trainer.global_step]
            if len(kept) < len(lines):
                with atomic_path(self.path) as tmp:  # a new file: readers notice
                    tmp.write_text("".join(kept), encoding="utf-8")

    def _write(self, trainer: lightning.Trainer, row: dict[str, Any]) -> None:
        if trainer.is_global_zero:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def _loss(self, trainer: lightning.Trainer) -> float | None:
        loss = trainer.callback_metrics.get("train_loss")
        return None if loss is None else float(loss)

    def on_train_batch_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every_n_steps and step != trainer.estimated_stepping_batches:
            return
        last_step, last_time = self._last
        now = time.perf_counter()
        rate = (step - last_step) * self.global_batch_size / max(now - last_time, 1e-9)
        self._last = (step, now)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        row = {
            "step": step,
            "epoch": trainer.current_epoch,
            "loss": self._loss(trainer),
            "lr": lr,
            "images_per_s": round(rate, 2),
            "time": time.time(),
        }
        self._write(trainer, row)

    def on_train_epoch_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        row = {
            "epoch_end": trainer.current_epoch,
            "step": trainer.global_step,
            "loss": self._loss(trainer),
            "time": time.time(),
        }
        self._write(trainer, row)
