"""SimCLR: NT-Xent against a plain reference, head, transform, one step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_train.methods.simclr import (
    NTXentLoss,
    SimCLR,
    SimCLRProjectionHead,
)
from lightly_train.models import build_embedding_model


def ntxent_reference(z0: np.ndarray, z1: np.ndarray, temperature: float) -> float:
    """Eq. 1 of SimCLR written out: mean over all 2N anchors, loops only."""
    z = np.concatenate([z0, z1]).astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        sims = [float(z[i] @ z[k]) / temperature for k in range(n2)]
        denominator = sum(math.exp(sims[k]) for k in range(n2) if k != i)
        total += -(sims[positive] - math.log(denominator))
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_ntxent_matches_reference(temperature: float, n: int) -> None:
    rng = np.random.default_rng(n)
    z0, z1 = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    loss = NTXentLoss(temperature)(torch.from_numpy(z0), torch.from_numpy(z1))
    assert loss.item() == pytest.approx(ntxent_reference(z0, z1, temperature))


def test_ntxent_is_low_for_matching_views() -> None:
    z = torch.eye(4) * 10
    assert NTXentLoss()(z, z).item() < 1e-3


def test_ntxent_gradients_flow_to_both_views() -> None:
    z0 = torch.randn(4, 8, requires_grad=True)
    z1 = torch.randn(4, 8, requires_grad=True)
    NTXentLoss()(z0, z1).backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0
    assert z1.grad is not None and z1.grad.abs().sum() > 0


def test_one_image_has_no_negatives_so_training_refuses_batch_size_1() -> None:
    """Why ``SimCLR.min_batch_size`` is 2 (``train`` checks it: test_train)."""
    z0 = torch.randn(1, 8, requires_grad=True)
    z1 = torch.randn(1, 8, requires_grad=True)
    loss = NTXentLoss()(z0, z1)
    loss.backward()
    assert loss.item() == 0.0
    assert z0.grad is not None and z0.grad.abs().sum() == 0
    assert SimCLR.min_batch_size == 2


def test_projection_head_shape() -> None:
    head = SimCLRProjectionHead(input_dim=12, hidden_dim=32, output_dim=16)
    assert head(torch.randn(4, 12)).shape == (4, 16)


def test_defaults_follow_paper() -> None:
    method = SimCLR(build_embedding_model("torchvision/resnet18"), total_steps=100)
    head = method.projection_head.layers
    assert (head[0].out_features, head[-1].out_features) == (2048, 128)
    assert method.criterion.temperature == 0.1
    assert method.optim_args.optimizer == "lars"
    assert method.optim_args.lr == pytest.approx(1.2)  # 0.075 x sqrt(256)
    assert method.optim_args.warmup_steps == 10  # 10 of 100 reference epochs


def test_transform_gives_two_normalised_views() -> None:
    image = Image.new("L", (50, 40), color=128)  # grayscale input is converted
    views = SimCLR.transform({"image_size": [24, 32]})(image)
    assert len(views) == 2
    for view in views:
        assert view.dtype == torch.float32 and view.shape == (3, 24, 32)
        assert type(view) is torch.Tensor
    # A gray 128 image normalises to (0.502 - mean) / std, up to jitter and blur.
    assert views[0].abs().max() < 3


def test_step_on_batch_of_two_views() -> None:
    method = SimCLR(
        build_embedding_model("torchvision/resnet18"),
        {"hidden_dim": 32, "output_dim": 16},
    )
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    loss = method.compute_loss(views)
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="expects 2 views, got 3"):
        method.training_step(views + views[:1], 0)
