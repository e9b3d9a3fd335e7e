"""The ``embed`` stages run in the calling process, without Ray: for a laptop, where
starting Ray costs more than the job (``runtime.runs_here``).

The same stages as on Ray: ``decode_batch`` on manifest blocks, in a pool of
threads (PIL releases the GIL while it decodes and resizes), a few blocks ahead of
one ``Embedder`` whose torch threads take every CPU; the batches go to the same
gather or shard writer, so the output's bits equal a Ray run's with the same torch
threads per model.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from lightly_train._cpu import log_bf16_hint
from lightly_train._memory import give_back_freed_memory
from lightly_train.data.decode import decode_batch
from lightly_train.data.names import ImageFiles
from lightly_train.data.publish import output_location
from lightly_train.embedding.config import EmbedConfig, batch_size, device_jpeg
from lightly_train.embedding.embedder import Embedder
from lightly_train.embedding.output import write_gathered, write_shards
from lightly_train.embedding.resume import ShardWork, WorkState
from lightly_train.errors import LightlyTrainError
from lightly_train.runtime import machine_cpus, this_machine
from lightly_train.sizing import resolve_accelerator

logger = logging.getLogger(__name__)


def execute(
    config: EmbedConfig,
    entry: dict[str, Any],
    files: ImageFiles,
    out: str,
    state: WorkState | ShardWork,
) -> tuple[int, int, dict[str, str]]:
    """``on_ray.execute`` in this process: (images, dim, failed)."""
    device = local_device(config)
    accelerator = "gpu" if device == "cuda" else "cpu"
    if accelerator == "cpu":
        log_bf16_hint(config.precision, "embeds")
    todo = np.flatnonzero(~state.done) if state.num_done else None
    batch = batch_size(config.batch_size, accelerator, len(files), config.size)
    on_device = device_jpeg(config, accelerator)
    with contextlib.closing(
        embedded_batches(config, entry, files, todo, batch, device, on_device)
        if todo is None or len(todo)
        else (rows for rows in ())  # a resumed run that had all but the output
    ) as batches:
        if not isinstance(state, ShardWork):
            return write_gathered(batches, files, out, config, state)
        writer, names = state.writer, files.filenames.array
        pieces = (
            writer.fragment(rows, names, state.work, config.shard_size,
                            config.on_error)
            for rows in batches
        )  # fmt: skip
        with output_location(out, directory=True) as target:
            return write_shards(
                pieces, state, files, target, config,
                lambda jobs: [writer.merge(*job) for job in jobs],
            )  # fmt: skip


def local_device(config: EmbedConfig) -> str:
    """``"cuda"`` or ``"cpu"`` for ``config.accelerator`` on this machine; one
    model (``devices``)."""
    if config.devices not in ("auto", 1):
        raise LightlyTrainError(
            f"runner='local' runs one model in this process, but devices="
            f"{config.devices} asks for {config.devices}. Use devices=1, or "
            "runner='ray' (a model actor per device)."
        )
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
    all), in row order. Decode threads: ``num_workers``, or as many as CPUs; up
    to one block per thread, and one more, decode ahead of the one being embedded
    (the first ones while the model loads). Torch's thread count is this
    process's again afterwards."""
    idx = np.arange(len(files), dtype=np.int64) if rows is None else rows
    cpus = machine_cpus()
    decoders = cpus if config.num_workers == "auto" else config.num_workers
    threads = torch.get_num_threads()

    def decode(start: int) -> dict[str, np.ndarray]:
        block = idx[start : start + batch]
        paths = files.paths.array.take(block).to_numpy(zero_copy_only=False)
        return decode_batch({"idx": block, "path": paths}, config.size, device_jpeg)

    pool = ThreadPoolExecutor(decoders, thread_name_prefix="lightly-train-decode")
    starts = iter(range(0, len(idx), batch))
    pending: deque[Future[dict[str, np.ndarray]]] = deque()

    def decode_ahead() -> None:
        while len(pending) <= decoders and (start := next(starts, None)) is not None:
            pending.append(pool.submit(decode, start))

    embedder: Embedder | None = None
    try:
        decode_ahead()  # the first blocks decode while the model loads
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
        while pending:
            rows = pending.popleft().result()
            decode_ahead()
            yield embedder(rows)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
        embedder = None  # its model and buffers go before the heap is trimmed
        give_back_freed_memory()
