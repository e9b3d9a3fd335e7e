"""Distillation: loss against a plain reference, teacher loading and its errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from lightly_train.errors import LightlyTrainError
from lightly_train.methods.distillation import Distillation, DistillationLoss
from lightly_train.models import build_embedding_model


def distillation_reference(student: np.ndarray, teacher: np.ndarray) -> float:
    """Mean over rows of |s/|s| - t/|t||^2, written out."""
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        s_unit = s / math.sqrt(sum(x * x for x in s))
        t_unit = t / math.sqrt(sum(x * x for x in t))
        total += sum((a - b) ** 2 for a, b in zip(s_unit, t_unit, strict=True))
    return total / len(student)


def test_loss_matches_reference() -> None:
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    loss = DistillationLoss()(torch.from_numpy(student), torch.from_numpy(teacher))
    assert loss.item() == pytest.approx(distillation_reference(student, teacher))
    same = torch.from_numpy(teacher)
    assert DistillationLoss()(3 * same, same).item() == pytest.approx(0.0, abs=1e-12)


def student() -> torch.nn.Module:
    return build_embedding_model("torchvision/resnet18", embed_dim=24)


def test_teacher_from_checkpoint_is_frozen(teacher_ckpt: Path) -> None:
    method = Distillation(student(), {"teacher": str(teacher_ckpt)})
    assert method.student_head.in_features == 24
    assert method.student_head.out_features == 512  # resnet18 teacher features
    method.on_fit_start()
    assert not method.teacher.training and method.embedding_model.training
    assert not any(p.requires_grad for p in method.teacher.parameters())
    optimizer = method.configure_optimizers()["optimizer"]
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in method.teacher.parameters()}
    loss = method.compute_loss([torch.randn(2, 3, 32, 32)])
    loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())


def test_teacher_left_out_of_checkpoints_and_restored(teacher_ckpt: Path) -> None:
    method = Distillation(student(), {"teacher": str(teacher_ckpt)})
    checkpoint = {"state_dict": method.state_dict()}
    method.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("teacher.") for k in checkpoint["state_dict"])
    assert any(k.startswith("embedding_model.") for k in checkpoint["state_dict"])
    method.on_load_checkpoint(checkpoint)
    method.load_state_dict(checkpoint["state_dict"])  # strict


def test_teacher_from_model_name_and_state_dict(tmp_path: Path) -> None:
    # A full torchvision state_dict, classifier included, as users have them.
    weights = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    method = Distillation(
        student(),
        {
            "teacher": "torchvision/resnet18",
            "teacher_weights": str(tmp_path / "r18.pth"),
        },
    )
    loaded = method.teacher.backbone.state_dict()["conv1.weight"]
    torch.testing.assert_close(loaded, weights["conv1.weight"])


def test_errors_without_teacher() -> None:
    with pytest.raises(LightlyTrainError) as info:
        Distillation(student())
    message = str(info.value)
    assert "teacher='path/to/lightly-train.ckpt'" in message
    assert "teacher_weights='path/to/weights.pth'" in message


@pytest.mark.parametrize(
    ("method_args", "match"),
    [
        ({"teacher": "torchvision/resnet18"}, "needs teacher_weights"),
        ({"teacher": "no/such.ckpt"}, "neither an existing checkpoint file"),
        (
            {"teacher": "torchvision/resnet18", "teacher_weights": "missing.pth"},
            "not an existing file",
        ),
    ],
)
def test_teacher_errors(method_args: dict[str, str], match: str) -> None:
    with pytest.raises(LightlyTrainError, match=match):
        Distillation(student(), method_args)


def test_weights_missing_backbone_keys(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(1000, 512)}, tmp_path / "fc.pth")
    with pytest.raises(LightlyTrainError, match=r"lack \d+ backbone keys \(conv1"):
        Distillation(
            student(),
            {
                "teacher": "torchvision/resnet18",
                "teacher_weights": str(tmp_path / "fc.pth"),
            },
        )


def test_weights_of_another_model(tmp_path: Path) -> None:
    torch.save(
        torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "34.pth"
    )
    with pytest.raises(LightlyTrainError, match=r"have unknown \d+ backbone keys"):
        Distillation(
            student(),
            {
                "teacher": "torchvision/resnet18",
                "teacher_weights": str(tmp_path / "34.pth"),
            },
        )


def test_checkpoint_teacher_with_weights_is_an_error(teacher_ckpt: Path) -> None:
    with pytest.raises(LightlyTrainError, match="remove teacher_weights"):
        Distillation(
            student(), {"teacher": str(teacher_ckpt), "teacher_weights": "w.pth"}
        )


def test_transform_gives_one_view() -> None:
    from PIL import Image

    views = Distillation.transform({"image_size": 32})(Image.new("RGB", (40, 40)))
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)]


def test_weights_of_wrong_shape(tmp_path: Path) -> None:
    weights = torchvision.models.resnet18(weights=None).state_dict()
    weights["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(weights, tmp_path / "bad.pth")
    with pytest.raises(LightlyTrainError, match="do not fit 'torchvision/resnet18'"):
        Distillation(
            student(),
            {
                "teacher": "torchvision/resnet18",
                "teacher_weights": str(tmp_path / "bad.pth"),
            },
        )
