"""Building a model whose weights come from a checkpoint, without drawing random
initial weights first.

A random init costs 0.45 s for a ResNet-50 and 1 s for a ViT-B/16 on 2 CPUs, and
every ``embed`` model actor paid it before its first batch. Building on the meta
device skips it too, but the meta kernels of ``normal_`` import ``torch._dynamo``
(2.1 s) and RegNets cannot be built there at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# nn.init's random initialisers and the tensors' random in-place fills. Constant
# fills (zeros_, ones_, fill_) still run: a module may compute a constant in place.
_RANDOM_FILLS = frozenset({
    "uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_", "random_",
    "bernoulli_", "exponential_", "log_normal_", "cauchy_", "geometric_",
})  # fmt: skip


class skip_random_init(TorchFunctionMode):  # noqa: N801 (used as a context)
    """Within it, random initialisers leave tensors as allocated (uninitialised).

    Only for models that take every tensor from a state dict afterwards; see
    ``untouched_buffers`` for the ones a state dict cannot reach. Torch function
    modes are per thread: other threads initialise as usual.

    Example:
        >>> with skip_random_init():
        ...     net = torchvision.models.resnet50()  # doctest: +SKIP
        >>> net.load_state_dict(state, assign=True)  # doctest: +SKIP
    """

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if getattr(func, "__name__", None) in _RANDOM_FILLS and args:
            return args[0]
        return func(*args, **(kwargs or {}))


def untouched_buffers(model: nn.Module) -> list[str]:
    """Buffers outside ``model.state_dict()`` (non-persistent): loading a state dict
    does not set them, so a model built with ``skip_random_init`` that has any must
    be built again for real."""
    persistent = set(model.state_dict())
    return [name for name, _ in model.named_buffers() if name not in persistent]


def build_then_load(
    build: Callable[[], nn.Module], state: dict[str, torch.Tensor]
) -> nn.Module:
    """``build()`` without random init, then ``state`` loaded (strictly) into it;
    built again with its init where the state dict cannot set every tensor."""
    with skip_random_init():
        model = build()
    if untouched_buffers(model):
        model = build()
        model.load_state_dict(state)
    else:
        model.load_state_dict(state, assign=True)
    return model
