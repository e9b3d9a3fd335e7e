from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lightly_train.models.embedding_model import EmbeddingModel, build_embedding_model
from lightly_train.models.registry import build_backbone
from tests.models.test_registry import REPRESENTATIVE


@pytest.mark.parametrize(("model", "model_args"), REPRESENTATIVE)
def test_embedding_model__embed_dim(model: str, model_args: dict[str, Any]) -> None:
    # test_registry runs these backbones for real; here only the wiring of the
    # projection matters, which the meta device checks without compute. RegNet
    # cannot be built on the meta device, so it runs on the CPU.
    device = "cpu" if "regnet" in model else "meta"
    with torch.device(device):
        embedding_model = EmbeddingModel(build_backbone(model, model_args), 16)
        embeddings = embedding_model.eval()(torch.empty(2, 3, 64, 64))
    assert embedding_model.embed_dim == 16
    assert embeddings.shape == (2, 16)


def test_embedding_model__without_embed_dim_is_the_backbone() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("torchvision/resnet18").eval()
    embedding_model = EmbeddingModel(backbone)
    assert embedding_model.embed_dim == 512
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(embedding_model(x), backbone(x))


def test_embedding_model__projection_is_linear_on_features() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("torchvision/mobilenet_v3_small").eval()
    embedding_model = EmbeddingModel(backbone, embed_dim=16)
    head = embedding_model.embed_head
    assert isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (576, 16)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = backbone(x) @ head.weight.T + head.bias
        torch.testing.assert_close(embedding_model(x), expected)


def test_build_embedding_model__trains() -> None:
    torch.manual_seed(0)
    embedding_model = build_embedding_model("torchvision/resnet18", embed_dim=8)
    embeddings = embedding_model(torch.randn(2, 3, 32, 32))
    assert embeddings.shape == (2, 8)
    embeddings.square().sum().backward()
    assert embedding_model.backbone.conv1.weight.grad is not None
    assert embedding_model.embed_head.weight.grad is not None


def test_build_embedding_model__model_args() -> None:
    embedding_model = build_embedding_model(
        "torchvision/vit_b_32", model_args={"image_size": 32}
    )
    assert embedding_model.embed_dim == 768
    with torch.no_grad():
        assert embedding_model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 768)


def test_embedding_model__custom_backbone_pooled() -> None:
    # Without ``feature_dim`` the dimension comes from a probe forward.
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )  # (N, 8)
    assert EmbeddingModel(backbone).embed_dim == 8
    embeddings = EmbeddingModel(backbone, embed_dim=4)(torch.randn(2, 3, 16, 16))
    assert embeddings.shape == (2, 4)


def test_embedding_model__custom_backbone_feature_map() -> None:
    # A backbone returning (N, C, H, W) is pooled to (N, C): D is C, not W.
    backbone = nn.Conv2d(3, 8, 3, stride=2)
    embedding_model = EmbeddingModel(backbone)
    assert embedding_model.embed_dim == 8
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(embedding_model(x), backbone(x).mean(dim=(2, 3)))
        assert EmbeddingModel(backbone, embed_dim=4)(x).shape == (2, 4)


def test_embedding_model__probe_leaves_backbone_unchanged() -> None:
    # Finding the feature dimension must not update batch norm statistics.
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    EmbeddingModel(backbone)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    assert backbone.training
