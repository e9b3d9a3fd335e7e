"""``export``: a trained model out of a checkpoint, for use without lightly-train.

checkpoint -> rebuild the part (plain torchvision model, or the embedding model)
-> save (state_dict or whole module) -> atomic rename to ``out``

Runs in the calling process; no Ray.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lightly_train._io import check_out_file
from lightly_train.checkpoint import embedding_model_from_entry, load_checkpoint_entry
from lightly_train.config import validate_config
from lightly_train.data import storage
from lightly_train.data.publish import output_location
from lightly_train.errors import LightlyTrainError
from lightly_train.export_config import ExportConfig
from lightly_train.models.registry import build_full_model, classifier_name

logger = logging.getLogger(__name__)


def export(
    out: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    part: Literal["model", "embedding_model"] = "model",
    format: Literal["torch_state_dict", "torch_model"] = "torch_state_dict",
    overwrite: bool = False,
) -> Path | str:
    """Exports the trained model of a checkpoint to a plain PyTorch file.

    ``part="model"`` is the trained backbone as the torchvision model of that name,
    e.g. ``torchvision.models.resnet18``. Its state_dict loads strictly into
    ``torchvision.models.get_model(name, weights=None, **model_args)``, or, for a
    model trained with ``model_args={"small_input": True}``, into
    ``lightly_train.models.build_full_model(model, model_args)``. Self-supervised
    training trains no classifier, so the classifier head (``fc`` of a ResNet,
    ``classifier`` of a MobileNet, ...) is untrained: it holds torchvision's random
    initialisation. Replace it, or fine-tune it, before classifying.

    ``part="embedding_model"`` is the ``EmbeddingModel`` that ``embed`` uses: the
    backbone without classifier, plus the ``embed_dim`` projection if one was
    trained. Its state_dict loads into
    ``lightly_train.models.build_embedding_model(model, model_args, embed_dim)``.

    ``format="torch_state_dict"`` saves only the weights and loads with
    ``torch.load(out, weights_only=True)``. ``format="torch_model"`` pickles the whole
    module: loading it needs ``torch.load(out, weights_only=False)`` (only for files
    you trust) and the module's code importable, torchvision for ``part="model"``,
    lightly_train as well for ``part="embedding_model"``.

    Args:
        out: Output file, or a URI (``s3://...``). Written to a temp file beside
            it, then renamed (or uploaded).
        checkpoint: A lightly-train checkpoint, e.g. ``out/checkpoints/last.ckpt``.
        part: ``"model"`` or ``"embedding_model"``.
        format: ``"torch_state_dict"`` or ``"torch_model"``.
        overwrite: Replace ``out`` if it exists.

    Returns:
        The path written (a ``Path``), or the URI as given.

    Example:
        >>> import lightly_train, torch, torchvision
        >>> lightly_train.export(
        ...     out="model.pt",
        ...     checkpoint="out/my_experiment/checkpoints/last.ckpt",
        ...     part="model",
        ...     format="torch_state_dict",
        ... )  # doctest: +SKIP
        >>> state = torch.load("model.pt", weights_only=True)  # doctest: +SKIP
        >>> torchvision.models.resnet18().load_state_dict(state)  # doctest: +SKIP
        <All keys matched successfully>
    """
    return run(validate_config(ExportConfig, dict(locals())))


def run(config: ExportConfig) -> Path | str:
    """Runs ``export`` for a validated config."""
    out = check_out_file(str(config.out), config.overwrite, example="model.pt")
    entry = load_checkpoint_entry(config.checkpoint)
    module = (
        full_model(entry)
        if config.part == "model"
        else embedding_model_from_entry(entry)
    )
    with output_location(out, directory=False) as tmp:
        torch.save(
            module.state_dict() if config.format == "torch_state_dict" else module,
            tmp,
        )
    logger.info(
        f"Exported the {config.part} ({entry['model']}) of '{config.checkpoint}' "
        f"as {config.format} to '{out}'."
    )
    return storage.local_path(out) or out  # the URI of a remote out


def full_model(entry: dict[str, Any]) -> nn.Module:
    """The checkpoint's backbone as the library's full model, in eval mode.

    The classifier, which the backbone lacks, keeps the library's random init.
    """
    model = entry["model"]
    if not model.startswith(("torchvision/", "timm/")):
        raise LightlyTrainError(
            f"part='model' exports torchvision and timm models; '{model}' is not "
            "one. Use part='embedding_model'."
        )
    net = build_full_model(model, entry.get("model_args"))
    prefix = "backbone."
    backbone = {
        key.removeprefix(prefix): value
        for key, value in entry["embedding_model_state_dict"].items()
        if key.startswith(prefix)
    }
    missing, unexpected = net.load_state_dict(backbone, strict=False)
    # The backbone lacks exactly the classifier; everything else is trained.
    classifier = classifier_name(model) + "."
    untrained = [key for key in missing if not key.startswith(classifier)]
    if untrained or unexpected or not missing:
        raise RuntimeError(
            f"Checkpoint weights do not match {model}: missing {untrained}, "
            f"unexpected {unexpected}, classifier keys {missing}."
        )
    return net.eval()
