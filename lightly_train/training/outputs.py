"""What ``train`` writes into ``out/``: the checks before anything is written, the
clearing of a former run's outputs on ``overwrite``, and the exported backbone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from lightly_train._io import check_writable
from lightly_train.checkpoint import load_embedding_model
from lightly_train.data.publish import atomic_path
from lightly_train.errors import LightlyTrainError

if TYPE_CHECKING:
    from torch import nn

# What a run writes into out/; overwrite=True removes exactly these.
OUTPUTS = (
    "checkpoints", "exported_models", "metrics.jsonl", "metrics.png", "train.log",
    "config.json", "tensorboard", ".ray_train",
)  # fmt: skip


def check_out(out: Path, overwrite: bool, resume: bool) -> None:
    """Fails if ``out`` cannot take this run's outputs; writes nothing."""
    if out.exists() and not out.is_dir():
        raise LightlyTrainError(f"Output '{out}' is a file; out must be a directory.")
    check_writable(out, directory=True)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise LightlyTrainError(
            f"resume_interrupted=True but there is no '{last}' to resume from. "
            "Start a new run without resume_interrupted."
        )
    if not resume and not overwrite and out.is_dir() and any(out.iterdir()):
        raise LightlyTrainError(
            f"Output directory '{out}' is not empty. Pass overwrite=True to replace "
            "its outputs, resume_interrupted=True to continue the run in it, or "
            "choose another out."
        )


def prepare_out(out: Path, overwrite: bool, resume: bool) -> Path | None:
    """Clears a former run's outputs on overwrite; returns the checkpoint to resume."""
    if resume:
        return out / "checkpoints" / "last.ckpt"
    if overwrite:
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return None


def export_backbone(checkpoint: Path, path: Path, model: str | nn.Module) -> Path:
    """The trained backbone's state_dict: for the library's model of that name, or
    for the custom module it was trained from."""
    import torch

    if isinstance(model, str):
        from lightly_train.exporting import export

        export(out=path, checkpoint=checkpoint, part="model", overwrite=True)
        return path
    trained = load_embedding_model(checkpoint, model=model)
    with atomic_path(path) as tmp:
        torch.save(trained.backbone.state_dict(), tmp)
    return path
