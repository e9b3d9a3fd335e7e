"""Training runs on NHWC (channels_last) memory: each method's loss and gradients
equal the NCHW ones, to float rounding (the worker converts every method with
``.to(memory_format=torch.channels_last)``; test_train checks its checkpoints)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from PIL import Image

from lightly_train.methods import get_method, list_methods
from lightly_train.models import build_embedding_model
from tests.methods.test_train_methods import tiny_args


@pytest.mark.parametrize("name", list_methods())
def test_channels_last_step_equals_contiguous(
    name: str, images: list[Image.Image], teacher_ckpt: Path
) -> None:
    method_args, transform_args = tiny_args(name, teacher_ckpt)
    method_cls = get_method(name)
    transform = method_cls.transform(transform_args)
    batch = [transform(image) for image in images[:6]]
    views = [torch.stack(view) for view in zip(*batch, strict=True)]
    torch.manual_seed(0)
    nchw = method_cls(build_embedding_model("torchvision/resnet18"), method_args)
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    convs = [p for p in nhwc.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert convs and all(not p.is_contiguous() for p in convs)  # really NHWC

    losses = []
    for method in (nchw, nhwc):
        method.train()
        loss = method.compute_loss(views)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    for (key, a), b in zip(nchw.named_parameters(), nhwc.parameters(), strict=True):
        if a.grad is None:
            assert b.grad is None, key
            continue
        # Float rounding in sums of different order: about 4e-5 of the largest.
        scale = a.grad.abs().max().clamp_min(1e-12)
        assert (b.grad - a.grad).abs().max() / scale < 1e-3, key
