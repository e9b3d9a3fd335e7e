"""DINO: loss and center against plain references, schedules, EMA, head, views."""

from __future__ import annotations

import math

import lightning
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightly_train.methods.dino import DINO
from lightly_train.methods.dino_head import DINOLoss, DINOProjectionHead, update_ema
from lightly_train.models import build_embedding_model

TINY = {"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 64}


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def dino_loss_reference(
    teacher: list[np.ndarray],
    student: list[np.ndarray],
    center: np.ndarray,
    teacher_temp: float,
    student_temp: float,
) -> float:
    """Eq. 1 of DINO over all (global teacher view, other student view) pairs."""
    pair_losses = []
    for i, t_view in enumerate(teacher):
        for j, s_view in enumerate(student):
            if i == j:
                continue
            rows = []
            for t, s in zip(t_view, s_view, strict=True):
                p_t = softmax((t - center) / teacher_temp)
                log_p_s = np.log(softmax(s / student_temp))
                rows.append(-(p_t * log_p_s).sum())
            pair_losses.append(np.mean(rows))
    return float(np.mean(pair_losses))


def test_loss_and_center_match_reference() -> None:
    rng = np.random.default_rng(0)
    teacher = [rng.normal(size=(3, 10)) for _ in range(2)]
    student = [rng.normal(size=(3, 10)) for _ in range(5)]
    center = rng.normal(size=10) * 0.1
    loss_fn = DINOLoss(output_dim=10, student_temp=0.1, center_momentum=0.9).double()
    loss_fn.center.copy_(torch.from_numpy(center)[None])

    loss = loss_fn(
        [torch.from_numpy(t) for t in teacher],
        [torch.from_numpy(s) for s in student],
        teacher_temp=0.04,
    )

    expected = dino_loss_reference(teacher, student, center, 0.04, 0.1)
    assert loss.item() == pytest.approx(expected)
    # The center moves after the loss: 0.9 * old + 0.1 * mean teacher output.
    new_center = 0.9 * center + 0.1 * np.concatenate(teacher).mean(axis=0)
    np.testing.assert_allclose(loss_fn.center[0].numpy(), new_center)


def test_loss_gives_no_gradient_to_teacher() -> None:
    teacher = [torch.randn(2, 8, requires_grad=True) for _ in range(2)]
    student = [torch.randn(2, 8, requires_grad=True) for _ in range(3)]
    DINOLoss(output_dim=8)(teacher, student, teacher_temp=0.04).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None for s in student)


def test_update_ema() -> None:
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 2)
    t_before = [p.detach().clone() for p in teacher.parameters()]
    update_ema(teacher, student, momentum=0.9)
    for t, t0, s in zip(
        teacher.parameters(), t_before, student.parameters(), strict=True
    ):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s)


def test_head_is_weight_normed_with_fixed_gain() -> None:
    head = DINOProjectionHead(input_dim=12, **TINY)
    assert head(torch.randn(4, 12)).shape == (4, 64)
    gain = head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.all(gain == 1)
    row_norms = head.last_layer.weight.norm(dim=1)
    torch.testing.assert_close(row_norms, torch.ones(64))


def test_defaults_follow_paper() -> None:
    args = DINO.args_cls()
    assert (args.hidden_dim, args.bottleneck_dim, args.output_dim) == (2048, 256, 65536)
    assert (args.warmup_teacher_temp, args.teacher_temp) == (0.04, 0.07)
    assert (args.student_temp, args.center_momentum) == (0.1, 0.9)
    assert (args.momentum_start, args.momentum_end) == (0.996, 1.0)


def set_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    monkeypatch.setattr(DINO, "global_step", property(lambda self: step))


def test_teacher_temp_and_momentum_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    # 30 of 100 reference epochs: the temperature warms up over 30 of 100 steps.
    dino = DINO(build_embedding_model("torchvision/resnet18"), TINY, total_steps=100)
    assert dino.teacher_temp_warmup_steps == 30
    expected = {0: (0.04, 0.996), 15: (0.055, None), 30: (0.07, None), 100: (0.07, 1.0)}
    for step, (temp, momentum) in expected.items():
        set_step(monkeypatch, step)
        assert dino.teacher_temp() == pytest.approx(temp)
        if momentum is not None:
            assert dino.ema_momentum() == pytest.approx(momentum)
    set_step(monkeypatch, 50)  # cosine: halfway between 0.996 and 1
    assert dino.ema_momentum() == pytest.approx(0.998)


def test_schedules_in_epochs_and_without_length() -> None:
    model = build_embedding_model("torchvision/resnet18")
    by_epochs = DINO(model, TINY, total_steps=1000, steps_per_epoch=5)
    assert by_epochs.teacher_temp_warmup_steps == 150  # 30 epochs x 5 steps
    assert by_epochs.freeze_last_layer_steps == 5
    unknown = DINO(model, TINY)
    assert unknown.teacher_temp_warmup_steps is None
    assert unknown.teacher_temp() == 0.04  # the reference code's constant default


def test_last_layer_frozen_in_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    dino = DINO(
        build_embedding_model("torchvision/resnet18"),
        TINY,
        total_steps=100,
        steps_per_epoch=10,
    )
    views = [torch.randn(2, 3, 32, 32)] * 2 + [torch.randn(2, 3, 16, 16)] * 2
    last_layer = dino.student_head.last_layer.parametrizations.weight.original1
    for step, frozen in [(9, True), (10, False)]:
        dino.zero_grad(set_to_none=True)
        set_step(monkeypatch, step)
        dino.compute_loss(views).backward()
        dino.on_after_backward()
        assert (last_layer.grad is None) == frozen


def test_teacher_sees_only_global_views_and_gets_no_gradient() -> None:
    dino = DINO(build_embedding_model("torchvision/resnet18"), TINY)
    seen: list[tuple[int, ...]] = []
    dino.teacher_embedding_model.register_forward_hook(
        lambda m, inp, out: seen.append(tuple(inp[0].shape))
    )
    views = [torch.randn(2, 3, 32, 32)] * 2 + [torch.randn(2, 3, 16, 16)] * 3
    dino.compute_loss(views).backward()
    assert seen == [(4, 3, 32, 32)]
    assert all(p.grad is None for p in dino.teacher_embedding_model.parameters())
    optimizer = dino.configure_optimizers()["optimizer"]
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in dino.teacher_head.parameters()}


def test_multi_crop_transform() -> None:
    image = Image.new("RGB", (64, 48), color=(200, 30, 90))
    views = DINO.transform({"image_size": 32, "n_local_views": 3})(image)
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 14, 14)] * 3
    local = DINO.transform({"image_size": 32, "local_image_size": [8, 12]})(image)
    assert len(local) == 8 and local[-1].shape == (3, 8, 12)
    assert all(math.isfinite(v.sum().item()) for v in views)


def test_teacher_follows_student_after_each_step() -> None:
    dino = DINO(build_embedding_model("torchvision/resnet18"), TINY, total_steps=2)
    teacher_before = [p.detach().clone() for p in dino.teacher_head.parameters()]
    batches = [
        [torch.randn(3, 32, 32)] * 2 + [torch.randn(3, 16, 16)] for _ in range(4)
    ]
    trainer = lightning.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(dino, torch.utils.data.DataLoader(batches, batch_size=2))
    teacher_after = list(dino.teacher_head.parameters())
    assert any(
        not torch.equal(p, p0)
        for p, p0 in zip(teacher_after, teacher_before, strict=True)
    )
    assert float(trainer.callback_metrics["ema_momentum"]) == pytest.approx(1.0)


class RecordWeightDecay(lightning.Callback):
    """The weight decay of each optimizer group at every training step."""

    def __init__(self) -> None:
        self.steps: list[list[float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        self.steps.append([g["weight_decay"] for g in optimizer.param_groups])


def fit_dino(
    dino: DINO, steps: int, callbacks: list, tmp_path=None
) -> lightning.Trainer:  # type: ignore[no-untyped-def]
    batches = [
        [torch.randn(3, 32, 32)] * 2 + [torch.randn(3, 16, 16)]
        for _ in range(2 * steps)
    ]
    trainer = lightning.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(dino, torch.utils.data.DataLoader(batches, batch_size=2))
    return trainer


def test_weight_decay_follows_a_cosine_from_004_to_04() -> None:
    model = build_embedding_model("torchvision/resnet18")
    dino = DINO(model, TINY, total_steps=4)
    assert (dino.optim_args.weight_decay, dino.optim_args.weight_decay_end) == (
        0.04,
        0.4,
    )
    record = RecordWeightDecay()
    fit_dino(dino, 4, [record])
    # Step s of 4 on the half cosine; biases and norms never decay.
    expected = [0.4 - 0.36 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert [decay for decay, _ in record.steps] == pytest.approx(expected)
    assert all(no_decay == 0.0 for _, no_decay in record.steps)
    # The ResNet recipe (SGD) keeps DINO's constant 1e-4; explicit values win.
    sgd = DINO(model, TINY, {"optimizer": "sgd"}, total_steps=4).optim_args
    assert (sgd.weight_decay, sgd.weight_decay_end) == (1e-4, 1e-4)
    mine = DINO(model, TINY, {"weight_decay_end": 0.1}, total_steps=4).optim_args
    assert (mine.weight_decay, mine.weight_decay_end) == (0.04, 0.1)
    assert dino.weight_decay(2) == pytest.approx(0.22)


def test_checkpoint_and_export_hold_the_teacher(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lightly_train.checkpoint import KEY, load_embedding_model
    from lightly_train.training.callbacks import CheckpointEntry

    dino = DINO(build_embedding_model("torchvision/resnet18"), TINY, total_steps=3)
    entry = CheckpointEntry(
        "torchvision/resnet18",
        None,
        None,
        (32, 32),
        {"mean": [0.5] * 3, "std": [0.5] * 3},
    )
    trainer = fit_dino(dino, 3, [entry], tmp_path)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)[KEY]["embedding_model_state_dict"]
    teacher = dino.teacher_embedding_model.state_dict()
    student = dino.embedding_model.state_dict()
    assert all(torch.equal(saved[k], teacher[k]) for k in teacher)
    assert any(not torch.equal(saved[k], student[k]) for k in student)
    loaded = load_embedding_model(path)
    x = torch.randn(2, 3, 32, 32)
    dino.teacher_embedding_model.eval()
    torch.testing.assert_close(loaded(x), dino.teacher_embedding_model(x))
