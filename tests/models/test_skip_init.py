import threading

import torch
from torch import nn

from lightly_train.models.skip_init import (
    build_then_load,
    skip_random_init,
    untouched_buffers,
)


def test_random_fills_are_skipped_and_constant_fills_run() -> None:
    drawn, constant = torch.zeros(100), torch.zeros(100)
    with skip_random_init():
        nn.init.kaiming_normal_(drawn.view(10, 10))
        drawn.uniform_()
        nn.init.ones_(constant)
    assert not drawn.any()
    assert torch.equal(constant, torch.ones(100))


def test_other_threads_initialise_as_usual() -> None:
    tensor = torch.zeros(100)
    with skip_random_init():
        thread = threading.Thread(target=tensor.normal_)
        thread.start()
        thread.join()
    assert tensor.any()


class WithDerivedBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        # Fixed random features, not in the state dict: a load cannot set them.
        seeded = torch.Generator().manual_seed(7)
        features = torch.empty(4).normal_(generator=seeded)
        self.register_buffer("features", features, persistent=False)


def test_a_module_with_buffers_outside_its_state_dict_is_built_for_real() -> None:
    source = WithDerivedBuffer()
    assert untouched_buffers(source) == ["features"]
    built = build_then_load(WithDerivedBuffer, source.state_dict())
    assert torch.equal(built.features, source.features)
    assert torch.equal(built.linear.weight, source.linear.weight)


def test_a_plain_module_takes_the_state_dicts_tensors() -> None:
    state = nn.Linear(4, 4).state_dict()
    built = build_then_load(lambda: nn.Linear(4, 4), state)
    assert untouched_buffers(built) == []
    assert built.weight.data_ptr() == state["weight"].data_ptr()  # assigned, no copy
