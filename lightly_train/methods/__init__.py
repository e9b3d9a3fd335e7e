"""Registry of self-supervised methods, addressed by name (e.g. ``"simclr"``).

Each method is a ``Method`` (a LightningModule) that trains an ``EmbeddingModel``;
``Method.transform(transform_args)`` gives its augmented views.
"""

from __future__ import annotations

import difflib

from lightly_train.errors import LightlyTrainError
from lightly_train.methods.dino import DINO
from lightly_train.methods.distillation import Distillation
from lightly_train.methods.method import Method
from lightly_train.methods.simclr import SimCLR

_METHODS: dict[str, type[Method]] = {
    "dino": DINO,
    "distillation": Distillation,
    "simclr": SimCLR,
}


def list_methods() -> list[str]:
    """Returns the names of all methods, sorted.

    Example:
        >>> from lightly_train.methods import list_methods
        >>> list_methods()
        ['dino', 'distillation', 'simclr']
    """
    return sorted(_METHODS)


def get_method(name: str) -> type[Method]:
    """Returns the method class registered as ``name``.

    Raises:
        LightlyTrainError: For an unknown name, suggesting the closest valid one.

    Example:
        >>> from lightly_train.methods import get_method
        >>> get_method("simclr").__name__
        'SimCLR'
    """
    method = _METHODS.get(name.lower()) if isinstance(name, str) else None
    if method is not None:
        return method
    valid = list_methods()
    close = difflib.get_close_matches(str(name).lower(), valid, n=1, cutoff=0.0)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise LightlyTrainError(
        f"Unknown method '{name}'.{hint} Valid methods are: {', '.join(valid)}."
    )


__all__ = ["DINO", "Distillation", "Method", "SimCLR", "get_method", "list_methods"]
