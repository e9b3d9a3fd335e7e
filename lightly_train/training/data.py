"""Training data: the image files of ``data``, decoded and augmented per worker.

File discovery and decoding are the ones ``embed`` uses. Each Ray Train worker reads
its own shard (``EpochSampler``) with its own loader processes. What an epoch draws,
its order and every augmentation, depends only on the seed and the epoch, so a
resumed run continues exactly as a run that never stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightly_train.data.decode import open_image, read_file

logger = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Images as the method's views.

    Items are ``(epoch, index)`` keys: the augmentation of an image is drawn from a
    generator seeded by the seed, the epoch and the index (not by the loader
    process), the same in any run that reaches that epoch.

    A file that cannot be decoded is skipped with a warning and the next file is
    used in its place, so batches keep their size (which DDP and batch norm need).
    """

    def __init__(
        self, paths: Sequence[str], transform: Callable[[Any], Any], seed: int = 0
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        # torchvision's transforms draw from torch's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index))
            return self.load(index)

    def load(self, index: int) -> Any:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                image = open_image(read_file(path))
            except Exception as ex:  # any decoder error: skip the file, never crash
                logger.warning(f"Skipping '{path}': cannot decode it ({ex}).")
                continue
            return self.transform(image)
        raise RuntimeError("None of the training images can be decoded.")


class EpochSampler(Sampler[tuple[int, int]]):
    """This worker's share of a shuffle of ``num_items`` that depends only on
    ``seed`` and the epoch, as ``(epoch, index)`` keys of ``ImageDataset``.

    As torch's DistributedSampler: the permutation is padded to a multiple of
    ``world_size`` and rank ``r`` takes every ``world_size``-th item from ``r``.
    Lightning calls ``set_epoch`` before each epoch; a resumed run passes the epoch
    it starts at, since Lightning creates the first iterator before that call.

    Example:
        >>> sampler = EpochSampler(5, rank=0, world_size=2, seed=0, epoch=3)
        >>> len(sampler), all(epoch == 3 for epoch, _ in sampler)
        (3, True)
    """

    def __init__(
        self, num_items: int, rank: int, world_size: int, seed: int, epoch: int = 0
    ) -> None:
        self.num_items, self.rank, self.world_size = num_items, rank, world_size
        self.seed, self.epoch = seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_items // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.num_items, generator=generator).tolist()
        order += order[: len(self) * self.world_size - self.num_items]
        return iter([(epoch, i) for i in order[self.rank :: self.world_size]])


def mix_seed(*values: int) -> int:
    """One 63-bit seed from several integers, different for each tuple."""
    seed = 0x9E3779B97F4A7C15
    for value in values:
        seed = (seed * 0x100000001B3 ^ (value & 0xFFFFFFFFFFFFFFFF)) % (1 << 63)
    return seed


def build_dataloader(
    paths: Sequence[str],
    transform: Callable[[Any], Any],
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start_epoch: int = 0,
) -> DataLoader:
    """Shuffled, ``drop_last`` loader of this worker's share of ``paths``; the
    Trainer must not replace its sampler (``use_distributed_sampler=False``)."""
    return DataLoader(
        ImageDataset(paths, transform, seed),
        batch_size=batch_size,
        sampler=EpochSampler(len(paths), rank, world_size, seed, start_epoch),
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
