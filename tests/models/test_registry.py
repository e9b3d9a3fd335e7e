from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from lightly_train.errors import LightlyTrainError
from lightly_train.models import build_embedding_model
from lightly_train.models.registry import (
    _TORCHVISION_HEADS,
    build_backbone,
    feature_dim,
    list_models,
)

# One model per family of ``_TORCHVISION_HEADS``, small enough to run on a CPU.
REPRESENTATIVE = [
    ("torchvision/resnet18", None),
    ("torchvision/resnext50_32x4d", None),
    ("torchvision/wide_resnet50_2", None),
    ("torchvision/regnet_x_400mf", None),
    ("torchvision/convnext_tiny", None),
    ("torchvision/efficientnet_b0", None),
    ("torchvision/mobilenet_v2", None),
    ("torchvision/mobilenet_v3_small", None),
    ("torchvision/vit_b_32", {"image_size": 64}),
    ("torchvision/swin_t", None),
]

# The torchvision modules that define the supported families, found independently of
# the name prefixes the registry matches on.
SUPPORTED_MODULES = {
    "torchvision.models.resnet",  # resnet, resnext, wide_resnet
    "torchvision.models.regnet",
    "torchvision.models.convnext",
    "torchvision.models.efficientnet",
    "torchvision.models.mobilenetv2",
    "torchvision.models.mobilenetv3",
    "torchvision.models.vision_transformer",
    "torchvision.models.swin_transformer",
}

# RegNet computes its stage widths with tensor ops that cannot run on the meta
# device; REPRESENTATIVE builds one for real.
# Every torchvision model (timm's are sampled below: there are over a thousand).
META_MODELS = [
    m
    for m in list_models()
    if m.startswith("torchvision/") and not m.startswith("torchvision/regnet")
]


def _has_classifier(backbone: nn.Module) -> bool:
    return any(
        isinstance(m, nn.Linear) and m.out_features == 1000 for m in backbone.modules()
    )


def test_representative_covers_every_family() -> None:
    names = [name.split("/")[1] for name, _ in REPRESENTATIVE]
    for family in _TORCHVISION_HEADS:
        assert any(n.startswith(family) for n in names), family


@pytest.mark.parametrize(("model", "model_args"), REPRESENTATIVE)
def test_build_backbone(model: str, model_args: dict[str, Any] | None) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(model, model_args).eval()
    assert not _has_classifier(backbone)
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, backbone.feature_dim)
    assert feature_dim(backbone) == backbone.feature_dim
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("model", META_MODELS)
def test_build_backbone__every_model_on_meta_device(model: str) -> None:
    # The meta device builds and runs models without memory or compute: this checks
    # the head removal and feature_dim of every model, even the largest.
    with torch.device("meta"):
        backbone = build_backbone(model).eval()
        features = backbone(torch.empty(2, 3, 224, 224))
    assert isinstance(backbone.feature_dim, int)
    assert features.shape == (2, backbone.feature_dim)
    assert not _has_classifier(backbone)


def test_list_models__every_family_has_a_model() -> None:
    models = list_models()
    for family in _TORCHVISION_HEADS:
        assert any(m.startswith(f"torchvision/{family}") for m in models), family


def test_list_models__all_torchvision_models_of_the_families() -> None:
    expected = {
        f"torchvision/{name}"
        for name in torchvision.models.list_models(module=torchvision.models)
        if torchvision.models.get_model_builder(name).__module__ in SUPPORTED_MODULES
    }
    models = [m for m in list_models() if m.startswith("torchvision/")]
    assert set(models) == expected
    assert models == sorted(models)
    assert len(models) == len(set(models))
    for name in ["torchvision/wide_resnet101_2", "torchvision/efficientnet_v2_s"]:
        assert name in models
    for name in ["torchvision/alexnet", "torchvision/maxvit_t", "torchvision/vgg16"]:
        assert name not in models


def test_build_backbone__random_init() -> None:
    first = build_backbone("torchvision/resnet18")
    second = build_backbone("torchvision/resnet18")
    assert not torch.equal(first.conv1.weight, second.conv1.weight)


def test_build_backbone__model_args() -> None:
    backbone = build_backbone("torchvision/resnet18", {"num_classes": 10})
    assert backbone.feature_dim == 512
    with torch.no_grad():
        assert backbone.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 512)


def test_build_backbone__unknown_model() -> None:
    with pytest.raises(LightlyTrainError) as ex:
        build_backbone("torchvision/resnet19")
    message = str(ex.value)
    assert "Unknown model 'torchvision/resnet19'." in message
    assert "Did you mean 'torchvision/resnet18'?" in message
    torchvision = [m for m in list_models() if m.startswith("torchvision/")]
    assert (
        f"Valid models are: {', '.join(torchvision)} and every timm model." in message
    )


@pytest.mark.parametrize("model", ["torchvision/alexnet", "timm/not_a_model", ""])
def test_build_backbone__unsupported_model(model: str) -> None:
    with pytest.raises(LightlyTrainError, match=f"Unknown model '{model}'"):
        build_backbone(model)


def test_build_backbone__name_without_library() -> None:
    # Leaving out "torchvision/" is the likeliest mistake: the hint must catch it.
    with pytest.raises(LightlyTrainError) as ex:
        build_backbone("resnet18")
    assert "Did you mean 'torchvision/resnet18'?" in str(ex.value)


@pytest.mark.parametrize(
    ("model", "model_args"),
    [
        ("torchvision/resnet18", {"not_an_arg": 1}),
        ("torchvision/swin_t", {"not_an_arg": 1}),
        ("torchvision/resnet18", {"weights": "DEFAULT"}),  # never download
    ],
)
def test_build_backbone__invalid_model_args(model: str, model_args: dict) -> None:
    with pytest.raises(LightlyTrainError, match=f"Invalid model_args for '{model}'"):
        build_backbone(model, model_args)


def test_build_backbone__invalid_model_arg_value() -> None:
    # 65 px is not a multiple of the 32 px patches: torchvision asserts.
    with pytest.raises(LightlyTrainError, match="Invalid model_args"):
        build_backbone("torchvision/vit_b_32", {"image_size": 65})


def test_timm_models_are_listed_and_build() -> None:
    import timm  # a dev dependency; optional for users

    models = list_models()
    assert "timm/resnet18" in models
    assert len([m for m in models if m.startswith("timm/")]) == len(timm.list_models())
    backbone = build_backbone("timm/vit_tiny_patch16_224", {"img_size": 32})
    assert backbone.feature_dim == 192
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, 192)
    embedder = build_embedding_model("timm/resnet18", embed_dim=4)
    with torch.no_grad():
        assert embedder(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_unknown_timm_model_suggests_the_closest() -> None:
    with pytest.raises(LightlyTrainError, match="Did you mean 'timm/resnet18'"):
        build_backbone("timm/resnet1")


def test_small_input_stem_keeps_resolution() -> None:
    big = build_backbone("torchvision/resnet18")
    small = build_backbone("torchvision/resnet18", {"small_input": True})
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    stem = torch.nn.Sequential(small.conv1, small.bn1, small.relu, small.maxpool)
    assert stem(x).shape[-2:] == (32, 32)  # the 7x7/2 conv and max-pool give 8x8
    assert small.feature_dim == big.feature_dim == 512
    with torch.no_grad():
        assert small.eval()(x).shape == (2, 512)
    wide = build_backbone("torchvision/wide_resnet50_2", {"small_input": True})
    assert wide.conv1.stride == (1, 1)


@pytest.mark.parametrize(
    ("model", "model_args", "message"),
    [
        ("torchvision/mobilenet_v3_small", {"small_input": True},
         "model_args.small_input is for torchvision ResNet-family models"),
        ("torchvision/resnet18", {"small_input": "yes"},
         "small_input must be true or false, got 'yes'"),
    ],
)  # fmt: skip
def test_small_input_errors(model: str, model_args: dict, message: str) -> None:
    with pytest.raises(LightlyTrainError, match=message):
        build_backbone(model, model_args)


def test_start_up_imports_only_what_the_model_needs() -> None:
    """A model actor builds a torchvision model without importing timm, and the
    driver checks a CNN checkpoint's image size without importing torchvision:
    each is 0.5-1.5 s of every embed's start-up."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lightly_train.checkpoint import check_image_size\n"
        "check_image_size({'model': 'torchvision/resnet18'}, (224, 224))\n"
        "print('torchvision' in sys.modules)\n"
        "from lightly_train.models.registry import build_backbone\n"
        "build_backbone('torchvision/resnet18')\n"
        "print('timm' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.split() == ["False", "False"]
