"""The ``embed`` stages run in the calling process, without Ray: for a laptop, where
starting Ray costs more than the job (``runtime.runs_here``).

The same stages as on Ray: ``decode_batch`` on manifest blocks, in a pool of
threads (PIL releases the GIL while it decodes and resizes), a few blocks ahead of
one ``Embedder`` whose torch threads take every CPU; the batches go to the same
gather or shard writer, so the output's bits equal a Ray run's with the same torch
threads per model.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from lightly_train._memory import give_back_freed_memory
from lightly_train.data.decode import decode_batch
from lightly_train.data.files import ImageFiles
from lightly_train.embedding.config import EmbedConfig
from lightly_train.embedding.embedder import Embedder
from lightly_train.errors import LightlyTrainError
from lightly_train.runtime import machine_cpus, resolve_accelerator, this_machine

logger = logging.getLogger(__name__)


def local_device(config: EmbedConfig) -> str:
    """``"cuda"`` or ``"cpu"`` for ``config.accelerator`` on this machine."""
    machine = this_machine()
    if config.accelerator == "gpu" and not machine["GPU"]:
        raise LightlyTrainError(
            "accelerator='gpu' with runner='local' but torch sees no GPU on this "
            "machine. Use accelerator='cpu' or 'auto', or runner='ray' on a Ray "
            "cluster with GPUs (RAY_ADDRESS)."
        )
    accelerator = resolve_accelerator(
        config.accelerator, config.devices, config.precision, machine
    )
    return "cuda" if accelerator == "gpu" else "cpu"


def embedded_batches(
    config: EmbedConfig,
    entry: dict[str, Any],
    files: ImageFiles,
    rows: np.ndarray | None,
    batch: int,
    device: str,
    device_jpeg: bool,
) -> Iterator[dict[str, np.ndarray]]:
    """``{"idx", "embedding", "error"}`` per batch of ``batch`` rows (``rows``, or
    all), in row order. Decode threads: ``num_workers``, or as many as CPUs; at
    most one block per thread waits decoded beyond the one being embedded.
    Torch's thread count is this process's again afterwards."""
    idx = np.arange(len(files), dtype=np.int64) if rows is None else rows
    cpus = machine_cpus()
    decoders = cpus if config.num_workers == "auto" else config.num_workers
    threads = torch.get_num_threads()
    embedder = Embedder(
        entry,
        device=device,
        precision=config.precision,
        num_threads=cpus,
        model=config.model,
        compile=config.compile,
        batch_size=batch,
        image_size=config.size,
    )

    def decode(start: int) -> dict[str, np.ndarray]:
        block = idx[start : start + batch]
        paths = files.paths.array.take(block).to_numpy(zero_copy_only=False)
        return decode_batch({"idx": block, "path": paths}, config.size, device_jpeg)

    pool = ThreadPoolExecutor(decoders, thread_name_prefix="lightly-train-decode")
    starts = iter(range(0, len(idx), batch))
    pending: deque[Future[dict[str, np.ndarray]]] = deque()
    try:
        while True:
            while len(pending) <= decoders:
                start = next(starts, None)
                if start is None:
                    break
                pending.append(pool.submit(decode, start))
            if not pending:
                return
            yield embedder(pending.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
        del embedder
        give_back_freed_memory()
