"""The lightly-train checkpoint format, shared by ``train``, ``embed`` and ``export``.

A checkpoint is one file that loads with ``torch.load(path, weights_only=True)``: no
pickled modules or classes. It holds a ``"lightly_train"`` entry, a plain dict::

    {
        "version": 1,
        "model": "torchvision/resnet18",
        "model_args": {},
        "embed_dim": None,                      # or an int
        "normalize": {"mean": [...], "std": [...]},
        "image_size": [224, 224],               # (height, width) used in training
        "embedding_model_state_dict": {...},    # EmbeddingModel weights
    }

Lightning's usual keys (``state_dict``, ``epoch``, ``global_step``, ...) may sit beside
it, so a training checkpoint is also a Lightning checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from lightly_train.data import storage
from lightly_train.data.publish import atomic_path
from lightly_train.errors import LightlyTrainError

# torch is imported where it is used: embed's driver checks the checkpoint file
# before torch has loaded (it loads in a thread while Ray starts).
if TYPE_CHECKING:
    from torch import nn

    from lightly_train.models.embedding_model import EmbeddingModel

# The checkpoint's model name of a custom backbone module: custom/<module>.<class>.
CUSTOM_PREFIX = "custom/"

FORMAT_VERSION = 1
KEY = "lightly_train"
IMAGENET_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def checkpoint_entry(
    model: EmbeddingModel,
    model_name: str,
    model_args: dict[str, Any] | None = None,
    embed_dim: int | None = None,
    image_size: tuple[int, int] | list[int] = (224, 224),
    normalize: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Returns the plain ``"lightly_train"`` dict describing and holding ``model``."""
    return {
        "version": FORMAT_VERSION,
        "model": model_name,
        "model_args": dict(model_args or {}),
        "embed_dim": embed_dim,
        "normalize": normalize or IMAGENET_NORMALIZE,
        "image_size": [int(s) for s in image_size],
        "embedding_model_state_dict": {
            k: v.detach().cpu() for k, v in model.state_dict().items()
        },
    }


def save_checkpoint(path: str | os.PathLike[str], entry: dict[str, Any]) -> Path:
    """Writes a checkpoint atomically (temp file beside ``path``, then rename)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save({KEY: entry}, tmp)
    return Path(path)


def create_checkpoint(
    path: str | os.PathLike[str],
    model: str = "torchvision/resnet18",
    model_args: dict[str, Any] | None = None,
    embed_dim: int | None = None,
    image_size: tuple[int, int] | list[int] = (224, 224),
    seed: int = 0,
) -> Path:
    """Writes a checkpoint for a freshly (randomly) initialised model.

    Example:
        >>> from lightly_train.checkpoint import create_checkpoint
        >>> create_checkpoint("random.ckpt", model="torchvision/resnet18")
    """
    import torch

    torch.manual_seed(seed)
    from lightly_train.models import build_embedding_model  # torchvision: when needed

    net = build_embedding_model(model, model_args, embed_dim)
    entry = checkpoint_entry(net, model, model_args, embed_dim, image_size)
    return save_checkpoint(path, entry)


def load_checkpoint_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Loads and validates the ``"lightly_train"`` dict of a checkpoint file (a local
    path or a URI such as ``s3://bucket/last.ckpt``)."""
    import torch

    path = str(path)
    check_checkpoint_file(path)
    try:
        ckpt = torch.load(storage.source(path), map_location="cpu", weights_only=True)
    except Exception as ex:  # torch.load raises many kinds for a bad file
        raise unreadable(path, ex) from ex
    entry = ckpt.get(KEY) if isinstance(ckpt, dict) else None
    if not isinstance(entry, dict) or "embedding_model_state_dict" not in entry:
        raise LightlyTrainError(
            f"Checkpoint '{path}' is not a lightly-train checkpoint: it has no "
            f"'{KEY}' entry. Use a checkpoint written by `lightly-train train`."
        )
    if entry.get("version") != FORMAT_VERSION:
        raise LightlyTrainError(
            f"Checkpoint '{path}' has format version {entry.get('version')!r}; this "
            f"lightly-train reads version {FORMAT_VERSION}."
        )
    return entry


def unreadable(path: str, ex: Exception) -> LightlyTrainError:
    """What ``torch.load(weights_only=True)``'s error says of ``path``, in one line."""
    pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(ex))
    if pickled:  # e.g. a LightlyTrain 0.x checkpoint, which pickles its model
        return LightlyTrainError(
            f"Checkpoint '{path}' holds pickled Python objects ({pickled[1]}), and "
            "lightly-train never runs code from a checkpoint (it loads them with "
            "weights_only=True). Use a checkpoint written by `lightly-train train` "
            "(LightlyTrain 0.x checkpoints are not)."
        )
    first_line = next(iter(str(ex).splitlines()), "")
    return LightlyTrainError(
        f"Checkpoint '{path}' could not be read; it is corrupt, truncated or not a "
        f"torch file ({type(ex).__name__}: {first_line})."
    )


def check_checkpoint_file(path: str | os.PathLike[str]) -> None:
    """Fails unless ``path`` (a local path or a URI) is a file; imports no torch."""
    kind = storage.file_type(str(path))
    if kind != "file":
        what = "a directory" if kind == "directory" else "missing"
        raise LightlyTrainError(
            f"Checkpoint '{path}' is {what}. Pass the checkpoint file written by "
            "training, e.g. checkpoint=out/my_experiment/checkpoints/last.ckpt."
        )


def load_embedding_model(
    checkpoint: str | os.PathLike[str], model: nn.Module | None = None
) -> EmbeddingModel:
    """Rebuilds the embedding model stored in a lightly-train checkpoint.

    The model maps a normalised float batch ``(N, 3, H, W)`` to embeddings ``(N, D)``;
    normalise with the checkpoint's ``normalize`` mean and std. It is returned in
    eval mode on the CPU.

    Args:
        checkpoint: A lightly-train checkpoint file.
        model: Only for checkpoints trained from a custom backbone module: a fresh
            instance of that module (the checkpoint holds its weights, not its code).

    Example:
        >>> import lightly_train, torch
        >>> model = lightly_train.load_embedding_model("out/checkpoints/last.ckpt")
        >>> model(torch.randn(2, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([2, 512])
    """
    return embedding_model_from_entry(load_checkpoint_entry(checkpoint), model)


def check_custom_model(entry: dict[str, Any], model: nn.Module | None) -> None:
    """A checkpoint of a custom model needs that module: it holds weights, not code."""
    name = entry["model"]
    if name.startswith(CUSTOM_PREFIX) and model is None:
        raise LightlyTrainError(
            f"The checkpoint holds a custom model ({name.removeprefix(CUSTOM_PREFIX)}"
            "); its code is not in the checkpoint. Pass a fresh instance of it, e.g. "
            "load_embedding_model(checkpoint, model=MyNet()) or "
            "lightly_train.embed(..., model=MyNet())."
        )


def check_image_size(entry: dict[str, Any], size: tuple[int, int]) -> None:
    """Fails on the driver when the checkpoint's model cannot take ``size`` images,
    as a ViT built for another ``model_args.image_size``: the model is built and
    run on the meta device, so no weights are allocated and nothing is computed.
    Only models with a fixed input size are checked (ViTs, Swins, timm models;
    torchvision's CNNs pool any size), so the usual job pays nothing. Custom models
    are not checked (their code may not run on meta tensors).
    """
    name, model_args = entry["model"], entry.get("model_args") or {}
    fixed = name.startswith(("torchvision/vit_", "torchvision/swin_", "timm/"))
    if not fixed:
        return
    import torch

    # torchvision (1.5 s to import) only for the models checked.
    from lightly_train.models import build_embedding_model

    with torch.device("meta"):
        net = build_embedding_model(name, model_args, entry.get("embed_dim")).eval()
        try:
            with torch.no_grad():
                net(torch.empty(1, 3, *size))
        except Exception as ex:  # shape errors of every kind of model
            height, width = size
            built = model_args.get("image_size", model_args.get("img_size"))
            hint = (
                f"it was built for model_args.image_size={built}: pass "
                f"image_size={built}"
                if built is not None
                else "pass the image_size it was trained at, "
                f"image_size={entry['image_size']}"
            )
            first_line = next(iter(str(ex).splitlines()), type(ex).__name__)
            raise LightlyTrainError(
                f"image_size={height}x{width} does not fit the checkpoint's model "
                f"{name} ({first_line}); {hint}."
            ) from None


def embedding_model_from_entry(
    entry: dict[str, Any], model: nn.Module | None = None
) -> EmbeddingModel:
    """Rebuilds the embedding model from a checkpoint's ``"lightly_train"`` dict.

    ``model`` is the custom backbone module a checkpoint of a custom model was
    trained from (a fresh instance; its weights come from the checkpoint).
    """
    from lightly_train.models import build_embedding_model  # torchvision: when needed
    from lightly_train.models.skip_init import build_then_load

    check_custom_model(entry, model)
    args = (entry.get("model_args"), entry.get("embed_dim"))
    state = entry["embedding_model_state_dict"]
    if model is None:  # a registry model: its random init is skipped
        built = build_then_load(
            lambda: build_embedding_model(entry["model"], *args), state
        )
    else:  # a custom module arrives built: it only gets the head
        built = build_embedding_model(model, *args)
        built.load_state_dict(state)
    return cast("EmbeddingModel", built.eval())
