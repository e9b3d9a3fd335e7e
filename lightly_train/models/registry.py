"""Registry of backbones, addressed as ``"library/name"`` (``"torchvision/resnet18"``).

A backbone is an ``nn.Module`` mapping a normalised batch ``(N, 3, H, W)`` to globally
pooled features ``(N, D)``; ``backbone.feature_dim`` holds ``D``. Backbones start from
random initialisation: nothing is ever downloaded.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from lightly_train._torchvision import torchvision  # without torch._dynamo
from lightly_train.errors import LightlyTrainError

# torchvision family -> (module replaced by Identity, Linear whose in_features is D).
# Replacing the classifier keeps each family's own global pooling.
_TORCHVISION_HEADS: dict[str, tuple[str, str]] = {
    "resnet": ("fc", "fc"),
    "resnext": ("fc", "fc"),
    "wide_resnet": ("fc", "fc"),
    "regnet": ("fc", "fc"),
    "convnext": ("classifier.2", "classifier.2"),
    "efficientnet": ("classifier", "classifier.1"),
    "mobilenet_v2": ("classifier", "classifier.1"),
    "mobilenet_v3": ("classifier", "classifier.0"),
    "vit": ("heads", "heads.head"),
    "swin": ("head", "head"),
}


def _family(name: str) -> str | None:
    # Longest prefix first so "wide_resnet50_2" is not taken for "resnet".
    for family in sorted(_TORCHVISION_HEADS, key=len, reverse=True):
        if name.startswith(family):
            return family
    return None


def _timm() -> Any:
    """The timm module when installed (``pip install lightly-train[timm]``)."""
    try:
        import timm
    except ImportError:
        return None
    return timm


def _torchvision_models() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return [f"torchvision/{n}" for n in names if _family(n) is not None]


def list_models() -> list[str]:
    """Returns the names of all models that can be trained and embedded with.

    ``torchvision/<name>`` for torchvision's classification families, and
    ``timm/<name>`` for every timm model when timm is installed.

    Example:
        >>> import lightly_train
        >>> "torchvision/resnet18" in lightly_train.list_models()
        True
    """
    models = _torchvision_models()
    timm = _timm()
    if timm is not None:
        models += [f"timm/{n}" for n in timm.list_models()]
    return sorted(models)


def _check_model_name(model: str) -> tuple[str, str]:
    """Splits a valid name into (library, name); suggests the closest otherwise.
    A torchvision name is checked without importing timm (0.5 s, in every model
    actor's start-up)."""
    valid = _torchvision_models() if model.startswith("torchvision/") else []
    if model not in valid:
        valid = list_models()
    if model in valid:
        library, _, name = model.partition("/")
        return library, name
    hint = ""
    if model.startswith("timm/") and _timm() is None:
        hint = " timm models need timm: pip install 'lightly-train[timm]'."
    # Match "resnet18" to "torchvision/resnet18" too.
    names = {v.split("/", 1)[1]: v for v in valid}  # torchvision's after timm's
    close = [names[model]] if model in names else []
    close = (
        close
        or difflib.get_close_matches(model, valid, n=1)
        or [
            names[n]
            for n in difflib.get_close_matches(model.split("/")[-1], names, n=1)
        ]
    )
    hint += f" Did you mean '{close[0]}'?" if close else ""
    listed = [v for v in valid if v.startswith("torchvision/")]
    more = " and every timm model" if _timm() is not None else ""
    raise LightlyTrainError(
        f"Unknown model '{model}'.{hint} Valid models are: {', '.join(listed)}{more}."
    )


# model_args key of lightly-train's own, not passed to the library's builder.
SMALL_INPUT = "small_input"
_SMALL_INPUT_FAMILIES = ("resnet", "resnext", "wide_resnet")


def build_full_model(model: str, model_args: dict[str, Any] | None = None) -> nn.Module:
    """Builds the library's own model of that name, classifier included.

    ``model_args={"small_input": True}`` gives a ResNet-family model the stem of
    CIFAR-style SSL baselines (SimCLR Appendix B.9): a 3x3 stride-1 first conv and
    no max-pool, so that a 32 px image keeps 32x32 features after the stem instead
    of 8x8. The other keys go to the library's builder.

    Example:
        >>> net = build_full_model("torchvision/resnet18", {"small_input": True})
        >>> net.conv1.kernel_size, type(net.maxpool).__name__
        ((3, 3), 'Identity')
    """
    library, name = _check_model_name(model)
    kwargs = dict(model_args or {})
    small_input = kwargs.pop(SMALL_INPUT, False)
    if not isinstance(small_input, bool):
        raise LightlyTrainError(
            f"Invalid model_args for '{model}': small_input must be true or false, "
            f"got {small_input!r}."
        )
    resnet = library == "torchvision" and _family(name) in _SMALL_INPUT_FAMILIES
    if small_input and not resnet:
        raise LightlyTrainError(
            f"model_args.small_input is for torchvision ResNet-family models "
            f"(resnet, resnext, wide_resnet), not '{model}'. Remove it, or use e.g. "
            "model=torchvision/resnet18."
        )
    try:
        if library == "timm":
            return _timm().create_model(name, pretrained=False, **kwargs)
        net = torchvision.models.get_model(name, weights=None, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as ex:
        raise LightlyTrainError(f"Invalid model_args for '{model}': {ex}") from ex
    if small_input:
        use_small_input_stem(net)
    return net


def use_small_input_stem(net: nn.Module) -> None:
    """Replaces a torchvision ResNet's 7x7 stride-2 conv and max-pool (4x
    downsampling) with a 3x3 stride-1 conv and no pooling, in place."""
    conv = net.conv1
    net.conv1 = nn.Conv2d(3, conv.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()


def classifier_name(model: str) -> str:
    """The module of ``build_full_model(model)`` that backbones lack (``"fc"``)."""
    library, name = _check_model_name(model)
    if library == "timm":
        return _timm().models.get_pretrained_cfg_value(name, "classifier") or "head"
    return _TORCHVISION_HEADS[_family(name)][0]  # type: ignore[index]


def build_backbone(model: str, model_args: dict[str, Any] | None = None) -> nn.Module:
    """Builds a randomly initialised backbone without its classifier.

    Args:
        model: A name from ``list_models()``, e.g. ``"torchvision/resnet18"``.
        model_args: Keyword arguments for the library's builder, e.g.
            ``{"image_size": 64}`` for a torchvision ViT trained on 64 px images
            (``{"img_size": 64}`` for timm).

    Returns:
        A module mapping ``(N, 3, H, W)`` to ``(N, D)``, with ``feature_dim == D``.
    """
    library, name = _check_model_name(model)
    net = build_full_model(model, model_args)
    if library == "timm":
        net.reset_classifier(0)  # timm's own pooled-features mode
        net.feature_dim = int(net.num_features)
        return net
    replace, linear = _TORCHVISION_HEADS[_family(name)]  # type: ignore[index]
    feature_dim = net.get_submodule(linear).in_features
    parent_name, _, child = replace.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, nn.Identity())
    net.feature_dim = feature_dim
    return net


def feature_dim(backbone: nn.Module) -> int:
    """Returns ``D`` of a backbone, from its ``feature_dim`` or a probe forward."""
    dim = getattr(backbone, "feature_dim", None)
    if isinstance(dim, int):
        return dim
    # Probe in eval mode so BatchNorm statistics stay as they are.
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 224, 224))  # (1, C) or (1, C, H, W)
    backbone.train(was_training)
    return int(features.shape[1])
