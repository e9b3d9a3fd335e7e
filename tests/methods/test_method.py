"""The Method base: optimizer defaults and schedules, LARS, batch checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightly_train.errors import LightlyTrainError
from lightly_train.methods.optim import LARS, cosine_schedule, warmup_cosine
from lightly_train.methods.simclr import SimCLR
from lightly_train.models import build_embedding_model

TINY = {"hidden_dim": 8, "output_dim": 4}


def simclr(**kwargs) -> SimCLR:  # type: ignore[no-untyped-def]
    return SimCLR(build_embedding_model("torchvision/resnet18"), TINY, **kwargs)


def test_lr_scales_with_global_batch_size() -> None:
    # SimCLR's LARS: 0.075 x sqrt(B) (square-root scaling, SimCLR Appendix B.1).
    assert simclr(global_batch_size=64).optim_args.lr == pytest.approx(0.6)
    assert simclr(global_batch_size=1024).optim_args.lr == pytest.approx(2.4)
    assert simclr(global_batch_size=4096).optim_args.lr == pytest.approx(4.8)
    # Linear for the others: SGD 0.03 x B / 256.
    sgd = simclr(optim_args={"optimizer": "sgd"}, global_batch_size=1024)
    assert sgd.optim_args.lr == pytest.approx(0.12)
    explicit = simclr(optim_args={"lr": 0.01}, global_batch_size=1024)
    assert explicit.optim_args.lr == 0.01


def test_other_optimizer_takes_its_generic_defaults() -> None:
    args = simclr(optim_args={"optimizer": "sgd"}).optim_args
    assert (args.optimizer, args.lr, args.weight_decay) == ("sgd", 0.03, 1e-4)
    with pytest.raises(LightlyTrainError, match="Invalid optim_args: optimizer"):
        simclr(optim_args={"optimizer": "adam"})
    with pytest.raises(LightlyTrainError, match="Valid optim_args keys are"):
        simclr(optim_args={"learning_rate": 0.1})


@pytest.mark.parametrize(
    ("kwargs", "optim_args", "warmup"),
    [
        ({"total_steps": 1000}, {}, 100),  # 10 of 100 reference epochs
        ({"total_steps": 1000, "steps_per_epoch": 7}, {}, 70),  # 10 epochs
        ({"total_steps": 50, "steps_per_epoch": 7}, {}, 5),  # 10% of a short run
        ({"total_steps": 50, "steps_per_epoch": 7}, {"warmup_epochs": 2}, 14),
        ({"total_steps": 50}, {"warmup_steps": 80}, 50),  # asked: capped at the run
        ({"total_steps": 1000}, {"warmup_epochs": 2}, 20),
        ({"total_steps": 1000}, {"warmup_steps": 3, "warmup_epochs": 2}, 3),
        ({}, {}, 0),  # unknown length: no warmup
    ],
)
def test_warmup_resolution(kwargs: dict, optim_args: dict, warmup: int) -> None:
    assert simclr(optim_args=optim_args, **kwargs).optim_args.warmup_steps == warmup


def lr_per_step(method: SimCLR) -> list[float]:
    """The learning rate of every optimizer step of the method's run."""
    config = method.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(method.total_steps or 0):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("steps_per_epoch", [2, 7, 30])
@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 10, 15, 20, 50])
def test_default_schedule_decays_for_every_run_length(
    epochs: int, steps_per_epoch: int
) -> None:
    total = epochs * steps_per_epoch
    method = simclr(
        total_steps=total, steps_per_epoch=steps_per_epoch, global_batch_size=256
    )
    lrs = lr_per_step(method)
    peak = max(lrs)
    assert peak == pytest.approx(1.2)
    warmup = method.optim_args.warmup_steps
    assert warmup is not None and warmup <= 0.1 * total
    # Up to the peak (the last warmup step and the first cosine step are both at
    # the peak), then down every step to the end of the run.
    top = lrs.index(peak)
    assert top <= warmup
    decay = lrs[warmup:]
    assert all(a > b for a, b in zip(decay[:-1], decay[1:], strict=True))
    assert lrs[-1] <= 0.5 * peak


def test_long_runs_keep_the_paper_warmup() -> None:
    # 10 warmup epochs of an 800-epoch run, as in SimCLR and DINO.
    method = simclr(total_steps=800 * 50, steps_per_epoch=50)
    assert method.optim_args.warmup_steps == 500
    assert simclr(total_steps=100 * 50, steps_per_epoch=50).optim_args.warmup_steps == (
        500
    )


def test_warmup_cosine() -> None:
    assert warmup_cosine(0, 4, 20) == 0.25
    assert warmup_cosine(3, 4, 20) == 1.0
    assert warmup_cosine(4, 4, 20) == 1.0
    assert warmup_cosine(12, 4, 20, end_factor=0.1) == pytest.approx(0.55)
    assert warmup_cosine(20, 4, 20, end_factor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(500, 4, None) == 1.0


def test_cosine_schedule() -> None:
    assert cosine_schedule(0, 10, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_schedule(5, 10, 0.996, 1.0) == pytest.approx(0.998)
    assert cosine_schedule(10, 10, 0.996, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(7, None, 0.996, 1.0) == 0.996


def test_scheduler_follows_warmup_and_cosine() -> None:
    method = simclr(optim_args={"warmup_steps": 2, "lr": 1.0}, total_steps=6)
    config = method.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)]
    assert lrs == pytest.approx(expected)


def test_no_weight_decay_on_biases_and_norms() -> None:
    optimizer = simclr(optim_args={"optimizer": "adamw"}).configure_optimizers()[
        "optimizer"
    ]
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] > 0 and all(p.ndim > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and all(
        p.ndim <= 1 for p in no_decay["params"]
    )


def test_lars_step_matches_formula() -> None:
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0]))
    weight.grad = torch.tensor([[0.6, 0.8]])
    bias.grad = torch.tensor([2.0])
    optimizer = LARS([weight, bias], lr=0.5, weight_decay=0.1, trust_coefficient=0.01)
    optimizer.step()
    # Weight: g + wd * w = [0.9, 1.2], norm 1.5; trust = 0.01 * 5 / 1.5.
    update = torch.tensor([[0.9, 1.2]]) * (0.01 * 5 / 1.5)
    torch.testing.assert_close(
        weight.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * update
    )
    # Bias: no weight decay, no adaptation.
    torch.testing.assert_close(bias.detach(), torch.tensor([0.0]))
    weight.grad, bias.grad = torch.zeros_like(weight), torch.zeros_like(bias)
    optimizer.step()  # Momentum 0.9 carries the last update on.
    torch.testing.assert_close(bias.detach(), torch.tensor([-0.9]))


def test_training_step_rejects_a_bad_batch() -> None:
    method = simclr()
    with pytest.raises(ValueError, match="list of 2 views, each a \\(B, 3, H, W\\)"):
        method.training_step(torch.randn(2, 3, 8, 8), 0)


def test_resolved_args_are_plain() -> None:
    resolved = simclr(total_steps=10).resolved_args()
    assert resolved["method_args"]["temperature"] == 0.1
    assert resolved["optim_args"]["optimizer"] == "lars"
    assert resolved["optim_args"]["warmup_steps"] == 1


def test_fit_start_puts_a_loaded_model_in_train_mode() -> None:
    method = simclr()
    method.embedding_model.eval()  # as load_embedding_model returns it
    method.on_fit_start()
    assert method.embedding_model.training and method.projection_head.training
