"""Probes for ``gpu_check.py``: timing helpers, the CPU decode limit, the GPU's
load while a run goes, embed's progress lines, a fresh actor's start-up, and both
decoders on large photos."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from lightly_train.data.decode import device_jpeg_area, load_image
from lightly_train.data.device_decode import decode_on_device

SIZE = (224, 224)
PROGRESS = re.compile(r"Embedded (\d+)/(\d+) images")


def rate(fn: Callable[[int], int], seconds: float, sync: Callable[[], None]) -> float:
    """Items per second of ``fn(i)`` (returns its item count), after a warm-up."""
    fn(0)
    sync()
    start, done, i = time.perf_counter(), 0, 1
    while time.perf_counter() - start < seconds:
        done += fn(i)
        i += 1
    sync()
    return done / (time.perf_counter() - start)


def _decode_cpu(paths: list[str]) -> int:
    for p in paths:
        load_image(Path(p).read_bytes(), SIZE)
    return len(paths)


def cpu_decode_limit(paths: list[Path]) -> float:
    cpus = os.cpu_count() or 1
    chunks = [[str(p) for p in paths[i::cpus]] for i in range(cpus)]
    with ProcessPoolExecutor(cpus) as pool:
        list(pool.map(_decode_cpu, [c[:4] for c in chunks]))  # start the workers
        start = time.perf_counter()
        n = sum(pool.map(_decode_cpu, chunks))
    return n / (time.perf_counter() - start)


def link_photos(unique: list[Path], directory: Path, n: int) -> Path:
    """``n`` links named ``000000.jpg``... to the unique photos, in turn."""
    directory.mkdir()
    for i in range(n):
        (directory / f"{i:06d}.jpg").symlink_to(unique[i % len(unique)])
    return directory


class GpuLoad:
    """Samples the GPU's utilisation (percent) in a thread while in a ``with``."""

    def __init__(self, device: str) -> None:
        self.device, self.samples = device, []
        self._stop = threading.Event()

    def __enter__(self) -> GpuLoad:
        if self.device == "cuda":
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 - no NVML: no figure
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


class ProgressLines(logging.Handler):
    """Collects ``embed``'s progress lines (every 10% when not on a terminal) as
    ``(time, images done)``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.points: list[tuple[float, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = PROGRESS.search(record.getMessage())
        if match:
            self.points.append((record.created, int(match.group(1))))


# A fresh model actor's start, step by step, in a new process (argv: checkpoint,
# photos directory, device).
STARTUP_PROBE = """
import sys, time
marks = [("python", time.perf_counter())]
import torch
marks.append(("import torch", time.perf_counter()))
import torchvision
marks.append(("import torchvision", time.perf_counter()))
ckpt, photos, device = sys.argv[1:]
torch.zeros(1, device=device)
marks.append(("device init", time.perf_counter()))
from pathlib import Path
import numpy as np
from lightly_train.checkpoint import load_checkpoint_entry
from lightly_train.data.decode import decode_batch
from lightly_train.embedding.embedder import Embedder
entry = load_checkpoint_entry(ckpt)
embedder = Embedder(entry, device, "bf16-mixed", image_size=(224, 224))
marks.append(("model", time.perf_counter()))
paths = np.array([str(p) for p in sorted(Path(photos).glob("*.jpg"))[:256]])
batch = decode_batch({"idx": np.arange(len(paths)), "path": paths}, (224, 224),
                     device_jpeg=True)
embedder(batch)
marks.append(("first batch", time.perf_counter()))
embedder(batch)
marks.append(("second batch", time.perf_counter()))
print("STARTUP " + ", ".join(f"{name} {t - marks[i][1]:.2f} s"
                             for i, (name, t) in enumerate(marks[1:])))
"""


def startup_probe(ckpt: Path, photos: Path, device: str) -> str:
    done = subprocess.run([sys.executable, "-c", STARTUP_PROBE, str(ckpt),
                           str(photos), device], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    out = [x for x in done.stdout.splitlines() if x.startswith("STARTUP")]
    return out[0][8:] if out else (done.stderr.strip().splitlines() or ["?"])[-1]


def large_photo_limits(
    root: Path, device: str, seconds: float, add: Callable[..., None]
) -> None:
    """Decode limits of photos of 2000x1500 and 4000x3000 (phone cameras), to
    224x224: the device's (full-size decode, in runs of ``MAX_PIXELS_AT_ONCE``)
    against PIL's on every CPU (which decodes such JPEGs at 1/4 and 1/8 of their
    size). Which one ``jpeg_decode="auto"`` should pick for them on GPUs."""
    from photos import make_photos

    cpus = os.cpu_count() or 1
    for size in ((2000, 1500), (4000, 3000)):
        label = f"{size[0]}x{size[1]}"
        unique = make_photos(root / label, 32, size, processes=cpus)
        jpeg = np.array([p.read_bytes() for p in unique], object)
        on_device = device_decode_rate([jpeg], device, seconds)
        add(f"decode limit ({device}: decode_jpeg + resize), {label}", on_device,
            f"{sum(map(len, jpeg)) / len(jpeg) / 1e6:.2f} MB per photo")  # fmt: skip
        pil = cpu_decode_limit([unique[i % len(unique)] for i in range(cpus * 12)])
        add(f"decode limit (PIL, {cpus} CPUs), {label}", pil,
            f"{pil / on_device:.2f} x the device's")  # fmt: skip


def device_decode_rate(batches: list[np.ndarray], device: str, seconds: float) -> float:
    """Images/s of ``decode_on_device`` on batches of JPEG bytes (of one size), in
    turn, to 224x224."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    areas = [np.array([device_jpeg_area(b) for b in jpeg]) for jpeg in batches]
    n = len(batches[0])
    target = torch.zeros((n, 3, *SIZE), dtype=torch.uint8, device=device)
    errors = np.full(n, "", dtype=object)

    def decode(i: int) -> int:
        k = i % len(batches)
        decode_on_device(batches[k], target, errors, areas[k])
        return n

    return rate(decode, seconds, sync)
