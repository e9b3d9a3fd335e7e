"""The driver's gather step without Ray: order, failures, and memory that grows with
the output only (small arrays per image), never with Python objects per image."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lightly_train.data.names import ImageFiles
from lightly_train.embedding.output import gather
from lightly_train.embedding.resume import WorkState

DIM = 8


def files(n: int) -> ImageFiles:
    names = [f"{i:07d}.png" for i in range(n)]
    return ImageFiles(names, names, 0, 0)


def batches(n: int, failed: set[int], block: int = 1000):
    """Blocks of rows in a shuffled order, as the actor pool emits them."""
    order = np.random.default_rng(0).permutation(n)
    for start in range(0, n, block):
        idx = np.sort(order[start : start + block])
        errors = np.array(["OSError: bad" if i in failed else "" for i in idx])
        yield {"idx": idx, "embedding": np.tile(idx[:, None], DIM).astype(np.float32),
               "error": errors}  # fmt: skip


def test_gather_orders_rows_and_names_failures(tmp_path: Path) -> None:
    embeddings, failed = gather(
        batches(5000, {3, 4999}), files(5000), WorkState(tmp_path, 5000)
    )
    assert failed == {"0000003.png": "OSError: bad", "0004999.png": "OSError: bad"}
    assert len(embeddings.filenames) == 4998
    names, vectors = next(embeddings.chunks())
    assert names[:4] == ["0000000.png", "0000001.png", "0000002.png", "0000004.png"]
    np.testing.assert_array_equal(vectors[:4, 0], [0, 1, 2, 4])


def test_gather_loses_no_row_silently(tmp_path: Path) -> None:
    rows = [b for i, b in enumerate(batches(3000, set())) if i != 1]  # one block lost
    with pytest.raises(RuntimeError, match="Embedded 2000 of 3000 images; rows lost"):
        gather(iter(rows), files(3000), WorkState(tmp_path, 3000))


def peak_bytes(n: int, tmp_path: Path) -> int:
    listing = files(n)
    tracemalloc.start()
    gather(batches(n, set()), listing, WorkState(tmp_path, n))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_driver_memory_per_image_is_a_few_bytes(tmp_path: Path) -> None:
    """Python allocations of gather at 20k vs 200k images: the vectors live in a
    file on disk; what grows is a bool mask and an index array (8 + 1 bytes per
    image and a little; the output's names are an Arrow array)."""
    small, large = peak_bytes(20_000, tmp_path), peak_bytes(200_000, tmp_path)
    per_image = (large - small) / 180_000
    assert per_image < 40, per_image
