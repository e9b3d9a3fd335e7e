"""A custom model's code travels to Ray's workers with the model.

Ray pickles a model instance by reference to its class: a worker imports the
class's module by name. Installed packages (torchvision, timm, ``pip install -e``
projects) import anywhere they are installed; a module that only the calling
process can import (a directory added to ``sys.path``, a notebook's neighbour, a
job's code on a remote cluster without ``working_dir``) would fail in every worker
with ``ModuleNotFoundError``. While ``code_travels`` is active such a module's
classes and functions are pickled by value instead (cloudpickle's
``register_pickle_by_value``, as Ray Serve does for user modules).
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ray import cloudpickle


@contextmanager
def code_travels(model: object | None) -> Iterator[None]:
    """Pickles ``model``'s top-level package by value while active, if no
    installed distribution provides it; ``None`` or a string model: nothing.

    Example:
        >>> with code_travels(MyNet()):  # doctest: +SKIP
        ...     ray.get(remote_fn.remote(model))  # workers need no ``mynet``
    """
    package = uninstalled_package(model)
    if package is None:
        yield
        return
    cloudpickle.register_pickle_by_value(sys.modules[package])
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[package])


def uninstalled_package(model: object | None) -> str | None:
    """The top-level package of ``model``'s class when it is imported (in
    ``sys.modules``) but neither installed nor in the standard library, nor
    ``__main__`` (which cloudpickle already pickles by value)."""
    if model is None or isinstance(model, str):
        return None
    package = type(model).__module__.split(".")[0]
    if package == "__main__" or package in sys.stdlib_module_names:
        return None
    if package not in sys.modules or package in installed_packages():
        return None
    return package


def installed_packages() -> set[str]:
    """Top-level import names that installed distributions provide."""
    return set(importlib.metadata.packages_distributions())
