"""torchvision, imported without ``torch._dynamo``.

``torchvision.ops.roi_align`` imports ``torch._dynamo.utils`` at module level (for
one check inside ``roi_align``), and with it all of ``torch._dynamo``: 2.1 s of
torchvision's 2.3 s import on 2 CPUs. Every ``embed`` model actor paid it before its
first batch, though only ``torch.compile`` needs dynamo.

While torchvision imports, ``torch._dynamo.utils`` is a stand-in whose
``is_compile_supported`` imports the real one when first called; any other name
read from it imports the real module at once. After the import the stand-in is gone,
so ``torch.compile`` and everything else import dynamo as usual. Where dynamo or
torchvision is already imported, this is a plain ``import torchvision``.

Example:
    >>> from lightly_train._torchvision import torchvision
    >>> torchvision.models.resnet18().fc.in_features
    512
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

_UTILS = "torch._dynamo.utils"


def _real_utils() -> ModuleType:
    if isinstance(sys.modules.get(_UTILS), _StandIn):
        del sys.modules[_UTILS]
    return importlib.import_module(_UTILS)


class _StandIn(ModuleType):
    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):  # the import system's probes (``__path__``)
            raise AttributeError(name)
        return getattr(_real_utils(), name)


def _is_compile_supported(device_type: str) -> bool:
    return bool(_real_utils().is_compile_supported(device_type))


def _import_torchvision() -> ModuleType:
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        return importlib.import_module("torchvision")
    stand_in = _StandIn(_UTILS)
    stand_in.is_compile_supported = _is_compile_supported  # type: ignore[attr-defined]
    sys.modules[_UTILS] = stand_in
    try:
        return importlib.import_module("torchvision")
    finally:
        if sys.modules.get(_UTILS) is stand_in:
            del sys.modules[_UTILS]


torchvision = _import_torchvision()
