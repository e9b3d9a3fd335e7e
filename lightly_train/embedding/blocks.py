"""The manifest's rows in blocks, one decode task each on Ray: how many rows a
block gets, from the job's size, the plan and the model's batch."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from lightly_train.data.names import ImageFiles
from lightly_train.sizing import Plan

MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 16, 256  # manifest rows per decode task
# Decoded pixels per block, at most: 256 images at 224x224. Smaller images make
# longer blocks, up to 2048 rows: Ray Data keeps some state per block on the
# driver (its stats), and each task costs a few milliseconds of its time; but
# the driver also holds a few blocks of embeddings at once when it gathers them
# (8192 rows of 576 floats: 19 MB each).
MAX_BLOCK_BYTES, MOST_BLOCK_ROWS = MAX_BLOCK_ROWS * 224 * 224 * 3, 2048


def manifest(
    files: ImageFiles,
    plan: Plan,
    batch: int,
    rows: np.ndarray | None = None,
    most: int = MAX_BLOCK_ROWS,
) -> list[pa.Table]:
    """Manifest rows ``(idx, path)`` in blocks, one decode task each: enough blocks
    to keep every actor and decode task busy, of 16 to ``most`` rows (a task
    costs a few milliseconds of Ray's time, and a small job no worker processes
    it cannot use), each a multiple or a divisor of the model's ``batch``.
    ``rows``: only these (a resumed run's), else all."""
    idx = np.arange(len(files), dtype=np.int64) if rows is None else rows
    num_blocks = 4 * max(plan.num_actors, plan.decode_tasks or 0, 4)
    size = block_rows(math.ceil(len(idx) / num_blocks), batch, most)
    # take: each block's own buffers, not a slice of all paths (a slice would
    # carry the whole buffer into every block's object).
    return [
        pa.table({"idx": idx[i : i + size],
                  "path": files.paths.array.take(idx[i : i + size])})
        for i in range(0, len(idx), size)
    ]  # fmt: skip


def max_block_rows(image_size: tuple[int, int]) -> int:
    """Rows per block whose decoded images take ``MAX_BLOCK_BYTES``: 256 at
    224x224; at least 16 (1024x1024 would give 12), at most 2048 (32x32: 12544)."""
    per_image = image_size[0] * image_size[1] * 3
    return min(MOST_BLOCK_ROWS, max(MIN_BLOCK_ROWS, MAX_BLOCK_BYTES // per_image))


def block_rows(target: int, batch: int, most: int = MAX_BLOCK_ROWS) -> int:
    """Rows per manifest block near ``target`` (clamped to 16-``most``) that tile the
    model's batches: Ray Data cuts a batch from one bundle of whole blocks and
    does not carry the rest over, so 1800 photos in blocks of 113 made batches
    of 64 and 49, each padded to 64 (``Embedder(batch_size=...)``): 12% of the
    forwards were padding. Whole batches per block, or equal blocks that divide
    one (they arrive in any order), leave partial batches only at the end."""
    target = min(most, max(MIN_BLOCK_ROWS, target))
    if target >= batch:
        return batch * (target // batch)
    # Equal divisors of the batch: blocks arrive in any order, any such set fills one.
    sizes = [d for d in range(MIN_BLOCK_ROWS, min(batch, most) + 1) if batch % d == 0]
    fitting = [d for d in sizes if d <= target]
    return max(fitting) if fitting else min(sizes, default=batch)
