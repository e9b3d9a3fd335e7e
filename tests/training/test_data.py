"""Training data: what an epoch draws depends only on the seed and the epoch."""

from __future__ import annotations

from pathlib import Path

import torch

from lightly_train.methods import get_method
from lightly_train.training.data import EpochSampler, ImageDataset
from tests.images import write_image


def test_ranks_share_each_epoch_and_epochs_differ() -> None:
    ranks = [list(EpochSampler(10, rank, 3, seed=7, epoch=2)) for rank in range(3)]
    assert [len(keys) for keys in ranks] == [4, 4, 4]  # padded to 12
    indices = [i for keys in ranks for _, i in keys]
    assert sorted(set(indices)) == list(range(10)) and len(indices) == 12
    assert {epoch for keys in ranks for epoch, _ in keys} == {2}

    sampler = EpochSampler(10, 0, 1, seed=7)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append([i for _, i in sampler])
    assert len({tuple(order) for order in orders}) == 3
    assert [i for _, i in EpochSampler(10, 0, 1, seed=7, epoch=1)] == orders[1]
    assert [i for _, i in EpochSampler(10, 0, 1, seed=8, epoch=1)] != orders[1]


def test_augmentation_depends_on_seed_epoch_and_index_only(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"{i}.png") for i in range(2)]
    for i, path in enumerate(paths):
        write_image(path, "RGB", size=(40, 40), seed=i)
    transform = get_method("simclr").transform({"image_size": 16})
    dataset = ImageDataset(paths, lambda image: torch.cat(transform(image)), seed=3)
    first = dataset[(5, 1)]
    torch.manual_seed(123)  # the loader process's own generator does not matter
    assert torch.equal(dataset[(5, 1)], first)
    assert not torch.equal(dataset[(6, 1)], first)
    other_seed = ImageDataset(paths, dataset.transform, seed=4)
    assert not torch.equal(other_seed[(5, 1)], first)
    # The global generator is left as it was.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    dataset[(5, 0)]
    assert torch.equal(torch.rand(3), expected)
