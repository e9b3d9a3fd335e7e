"""Training data: the image files of ``data``, decoded and augmented per worker.

File discovery and decoding are the ones ``embed`` uses. Each Ray Train worker reads
its own shard (Lightning's DistributedSampler) with its own loader processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from lightly_train.data.decode import open_image, read_file

logger = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Images as the method's views.

    A file that cannot be decoded is skipped with a warning and the next file is
    used in its place, so batches keep their size (which DDP and batch norm need).
    """

    def __init__(self, paths: Sequence[str], transform: Callable[[Any], Any]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                image = open_image(read_file(path))
            except Exception as ex:  # any decoder error: skip the file, never crash
                logger.warning(f"Skipping '{path}': cannot decode it ({ex}).")
                continue
            return self.transform(image)
        raise RuntimeError("None of the training images can be decoded.")


def build_dataloader(
    paths: Sequence[str],
    transform: Callable[[Any], Any],
    batch_size: int,
    num_workers: int,
    seed: int,
) -> DataLoader:
    """Shuffled, ``drop_last`` loader; Lightning adds the DistributedSampler."""
    return DataLoader(
        ImageDataset(paths, transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed),
    )
