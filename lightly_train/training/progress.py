"""Per-epoch progress lines of ``train``, printed by the driver.

Rank 0 appends rows to ``out/metrics.jsonl`` (``JsonlMetrics``); the driver reads
what is new every second and logs one line per finished epoch; in the CLI on a
terminal, a bar of the epoch's images as well. It works the same for a local run
and under ``ray job submit``, where what workers print is not shown by default.

Example:
    >>> with EpochLines(Path("out/metrics.jsonl"), epochs=2, steps_per_epoch=10,
    ...                 global_batch_size=64):  # doctest: +SKIP
    ...     fit(...)
    Epoch 1/2: step 10/20, loss 5.123, lr 0.0845, 38.2 images/s, ETA 0:17.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from lightly_train._logging import bar_stream
from lightly_train._progress import Progress, duration

logger = logging.getLogger(__name__)

POLL_S = 1.0


class EpochLines:
    """Logs a line for each ``epoch_end`` row appended to ``path`` while active."""

    def __init__(
        self, path: Path, epochs: int, steps_per_epoch: int, global_batch_size: int
    ) -> None:
        self.path, self.epochs = path, epochs
        self.total_steps = epochs * steps_per_epoch
        self.global_batch_size = global_batch_size
        # A resumed run's former rows are never shown again, nor are the rows a
        # restarted worker group redoes (it rewrites the file without those past
        # its checkpoint, then appends them anew).
        self.file, self.offset, self.seen = file_id(path), 0, (-1, False)
        if path.exists():
            self.offset = path.stat().st_size
            rows = parse_rows(path.read_bytes())
            self.seen = max(map(row_key, rows), default=self.seen)
        self.steps_per_epoch = steps_per_epoch
        self.last_step_row: dict[str, Any] = {}
        self.bar: Progress | None = None  # this epoch's, on a terminal
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="epochs")

    def __enter__(self) -> EpochLines:
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self.thread.join()

    def run(self) -> None:
        while not self.stop.wait(POLL_S):
            self.read()
        self.read()  # what the last epoch wrote before fit returned

    def read(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            stat = os.fstat(f.fileno())
            if (stat.st_dev, stat.st_ino) != self.file:
                self.file, self.offset = (stat.st_dev, stat.st_ino), 0
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a row being written waits
        self.offset += len(complete)
        for row in parse_rows(complete):
            if row_key(row) <= self.seen:
                continue
            self.seen = row_key(row)
            if "epoch_end" in row:
                if self.bar is not None:
                    self.bar.close()
                    self.bar = None
                logger.info(self.line(row))
            else:
                self.draw(row)
                self.last_step_row = row

    def draw(self, row: dict[str, Any]) -> None:
        """Advances the epoch's bar to the step of ``row``, on a terminal."""
        stream = bar_stream()
        if stream is None:
            return
        epoch_step = (int(row["step"]) - 1) % self.steps_per_epoch + 1
        if self.bar is None:
            self.bar = Progress(self.steps_per_epoch * self.global_batch_size,
                                f"Epoch {int(row['epoch']) + 1}/{self.epochs}",
                                stream=stream)  # fmt: skip
        self.bar.update(epoch_step * self.global_batch_size - self.bar.done)

    def line(self, row: dict[str, Any]) -> str:
        step, loss = int(row["step"]), row.get("loss")
        last = self.last_step_row
        lr, rate = last.get("lr"), last.get("images_per_s")
        parts = [f"Epoch {int(row['epoch_end']) + 1}/{self.epochs}: step "
                 f"{step}/{self.total_steps}"]  # fmt: skip
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        if lr is not None:
            parts.append(f"lr {lr:.4g}")
        if rate:
            parts.append(f"{rate:.1f} images/s")
        if rate and step < self.total_steps:
            eta = duration((self.total_steps - step) * self.global_batch_size / rate)
            parts.append(f"ETA {eta}")
        return ", ".join(parts) + "."


def file_id(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is: it changes when the file is replaced."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def parse_rows(data: bytes) -> list[dict[str, Any]]:
    """The complete JSON rows of ``data``; a row cut off mid-write is left out."""
    rows = []
    for line in data.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def row_key(row: dict[str, Any]) -> tuple[int, bool]:
    """Rows in the order a run writes them: a step's row, then its epoch's end."""
    return int(row["step"]), "epoch_end" in row
