"""Every registered method trains for a few real steps with a Lightning Trainer."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lightly_train.methods import Method, get_method, list_methods
from lightly_train.methods.transforms import MultiViewTransform
from lightly_train.models import build_embedding_model


class ViewDataset(Dataset):
    def __init__(self, images: list[Image.Image], transform: MultiViewTransform):
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> list[torch.Tensor]:
        return self.transform(self.images[idx])


def tiny_args(name: str, teacher_ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method_args, transform_args) that keep each method small and fast."""
    method_args: dict[str, dict[str, Any]] = {
        "dino": {"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 64},
        "distillation": {"teacher": str(teacher_ckpt)},
        "simclr": {"hidden_dim": 32, "output_dim": 16},
    }
    transform_args: dict[str, dict[str, Any]] = {"dino": {"n_local_views": 2}}
    return method_args.get(name, {}), {"image_size": 32, **transform_args.get(name, {})}


def clone_params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in module.named_parameters())


def cpu_trainer(max_steps: int) -> lightning.Trainer:
    return lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.mark.parametrize("name", list_methods())
def test_method_trains_and_resumes(
    name: str, images: list[Image.Image], teacher_ckpt: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    method_cls = get_method(name)
    method_args, transform_args = tiny_args(name, teacher_ckpt)
    transform = method_cls.transform(transform_args)
    pickle.loads(pickle.dumps(transform))  # data workers receive it pickled
    loader = DataLoader(
        ViewDataset(images, transform), batch_size=4, shuffle=True, drop_last=True
    )

    def build() -> Method:
        return method_cls(
            build_embedding_model("torchvision/resnet18"),
            method_args,
            optim_args={"warmup_steps": 0},
            total_steps=4,
            global_batch_size=4,
        )

    method = build()
    before = clone_params(method.embedding_model)
    trainer = cpu_trainer(max_steps=3)
    trainer.fit(method, loader)

    assert trainer.global_step == 3
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))
    assert changed(method.embedding_model, before)

    # The Lightning checkpoint loads without pickled objects, and training resumes.
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    torch.load(tmp_path / "last.ckpt", weights_only=True)
    resumed = cpu_trainer(max_steps=4)
    resumed.fit(build(), loader, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.global_step == 4
