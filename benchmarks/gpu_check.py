"""GPU check of ``embed``: resnet50 @224 bf16 on generated 500x375 JPEG photos.

    python benchmarks/gpu_check.py [--num-images 24000] [--device cuda]

Prints, in one table (and writes it as JSON to ``--json``, default ``$OUT``):
- model limit: the Embedder's forward on ready uint8 batches on the device (batch
  256, bf16 autocast, channels_last); ``torch.compile``'s, last, in a subprocess
  with a time limit;
- GPU decode limit: ``decode_on_device`` (``torchvision.io.decode_jpeg`` with
  nvJPEG, then the antialiased resize) on batches of the photos' bytes;
- actor work: the Embedder on ``decode_batch(..., device_jpeg=True)`` batches
  (decode, resize, forward), in 1 and 2 threads: an actor's rate without Ray;
- CPU decode limit: PIL read + decode + resize in one process per CPU;
- embed (``lightly_train.embed`` on one local Ray, after a warm-up run), for each
  plan (JPEG decode on the model's device or in CPU tasks; actors per GPU; batches
  in flight per actor): the steady rate (marginal between a quarter of the photos
  and all of them, so the actor pool's start-up cancels) against
  ``min(model limit, decode limit)`` of its path, the rate end to end on all
  photos, and the GPU's mean utilisation during that run.

``--num-images`` files are links to ``--unique`` generated photos (page cache, as
a warm dataset). ``--device cpu --num-images 400 --unique 100 --model
torchvision/resnet18 --batch-size 32`` dry-runs the same code without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from photos import make_photos  # noqa: E402

from lightly_train import runtime  # noqa: E402
from lightly_train.checkpoint import create_checkpoint, load_checkpoint_entry  # noqa: E402
from lightly_train.data.decode import decode_batch, load_image  # noqa: E402
from lightly_train.data.device_decode import decode_on_device  # noqa: E402
from lightly_train.embedding.embedder import Embedder  # noqa: E402

SIZE = (224, 224)
PRECISION = "bf16-mixed"
# (jpeg_decode, actors per GPU, batches in flight per actor)
PLANS = [("model", 1, 2), ("model", 2, 2), ("model", 1, 4), ("tasks", 1, 2)]


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


def actor_work(embedder: Embedder, batches: list[dict], threads: int) -> float:
    """Images/s of the Embedder on device-JPEG batches, ``threads`` calls at once."""
    n = len(batches[0]["idx"])
    work = 20 * threads
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(embedder, batches[:threads]))  # warm-up: streams, buffers
        start = time.perf_counter()
        list(pool.map(embedder, [batches[i % len(batches)] for i in range(work)]))
    return work * n / (time.perf_counter() - start)


def compile_rate(args: argparse.Namespace, ckpt: Path) -> float:
    """``torch.compile``'s model limit (in a subprocess of this script)."""
    entry = load_checkpoint_entry(ckpt)
    embedder = Embedder(entry, args.device, PRECISION, compile=True)
    return model_rate(embedder, args)


def model_rate(embedder: Embedder, args: argparse.Namespace) -> float:
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (args.batch_size, *SIZE, 3), np.uint8)
              for _ in range(4)]  # fmt: skip
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    return rate(lambda i: len(embedder.embed(inputs[i % 4])), args.seconds, sync)


def embed_plans(args, root, unique, ckpt, limits, add) -> None:
    import ray

    import lightly_train

    small = link_photos(unique, root / "small", args.num_images // 4)
    large = link_photos(unique, root / "large", args.num_images)
    # One Ray for every run, so the timed runs pay no Ray start-up.
    ray.init(address="local", include_dashboard=False,
             _system_config={"worker_niceness": 0})  # fmt: skip
    accelerator = "gpu" if args.device == "cuda" else "cpu"

    def run(data: Path, mode: str) -> float:
        start = time.perf_counter()
        lightly_train.embed(
            out=root / "e.pth", data=data, checkpoint=ckpt, precision=PRECISION,
            jpeg_decode=mode, overwrite=True, accelerator=accelerator,
            batch_size=args.batch_size,
        )  # fmt: skip
        return time.perf_counter() - start

    run(small, "model")  # warm-up: Ray's worker processes, the page cache
    for mode, per_gpu, calls in PLANS:
        if time.monotonic() > args.deadline:
            add(f"embed {mode} {per_gpu}x{calls}", float("nan"), "skipped: time")
            continue
        runtime.GPU_ACTORS_PER_DEVICE, runtime.GPU_CALLS_PER_ACTOR = per_gpu, calls
        t_small = run(small, mode)
        with GpuLoad(args.device) as load:
            t_large = run(large, mode)
        steady = (args.num_images - args.num_images // 4) / (t_large - t_small)
        bound = min(limits["forward"], limits[mode])  # limits[mode]: its decode
        label = f"jpeg_decode={mode}, {per_gpu} actor(s)/GPU x {calls} in flight"
        add(f"embed steady, {label}", steady,
            f"{steady / bound:.2f} x min(model, decode)")  # fmt: skip
        add(f"  end to end, {args.num_images} photos", args.num_images / t_large,
            f"wall {t_large:.1f} s, GPU busy {load.mean:.0f}%")  # fmt: skip
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=24000)
    parser.add_argument("--unique", type=int, default=2048)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="torchvision/resnet50")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--budget", type=float, default=270.0, help="seconds")
    parser.add_argument("--json", default=os.environ.get("OUT", "."))
    parser.add_argument("--compile-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.deadline = time.monotonic() + args.budget
    if args.compile_only:  # the subprocess: one number
        print(f"COMPILED {compile_rate(args, args.compile_only):.1f}")
        return
    device, batch = args.device, args.batch_size
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows: list[tuple[str, float, str]] = []

    def add(label: str, value: float, note: str = "") -> None:
        rows.append((label, value, note))
        print(f"[gpu_check] {label:60s} {value:9.1f} images/s  {note}", flush=True)

    limits: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        unique = make_photos(root / "unique", args.unique, processes=os.cpu_count())
        ckpt = create_checkpoint(root / "m.ckpt", model=args.model)
        entry = load_checkpoint_entry(ckpt)
        embedder = Embedder(entry, device, PRECISION, image_size=SIZE)
        forward = limits["forward"] = model_rate(embedder, args)
        add("model limit (eager, channels_last)", forward, f"batch {batch}")
        jpegs = [np.array([p.read_bytes() for p in unique[i : i + batch]], object)
                 for i in range(0, len(unique) - batch + 1, batch)]  # fmt: skip
        target = torch.zeros((batch, 3, *SIZE), dtype=torch.uint8, device=device)
        errors = np.full(batch, "", dtype=object)
        limits["model"] = rate(
            lambda i: decode_on_device(jpegs[i % len(jpegs)], target, errors) or batch,
            args.seconds, sync,
        )  # fmt: skip
        add(f"decode limit ({device}: decode_jpeg + resize)", limits["model"])
        batches = [decode_batch({"idx": np.arange(batch), "path": np.array(
            [str(p) for p in unique[i : i + batch]])}, SIZE, device_jpeg=True)
            for i in range(0, len(unique) - batch + 1, batch)]  # fmt: skip
        for threads in (1, 2):
            add(f"actor work without Ray (decode+forward), {threads} thread(s)",
                actor_work(embedder, batches, threads))  # fmt: skip
        del embedder
        torch.cuda.empty_cache() if device == "cuda" else None
        paths = [unique[i % len(unique)] for i in range(max(args.num_images // 2,
                                                             len(unique)))]  # fmt: skip
        limits["tasks"] = cpu_decode_limit(paths)
        add(f"decode limit (PIL, {os.cpu_count()} CPUs)", limits["tasks"],
            f"{limits['tasks'] / (os.cpu_count() or 1):.0f} per core")  # fmt: skip
        embed_plans(args, root, unique, ckpt, limits, add)
        left = args.deadline - time.monotonic() + 60
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--compile-only", str(ckpt),
                 "--device", device, "--model", args.model, "--batch-size",
                 str(batch), "--seconds", str(args.seconds)],
                capture_output=True, text=True, timeout=max(30, left),
            )  # fmt: skip
            out = [x for x in done.stdout.splitlines() if x.startswith("COMPILED")]
            compiled = float(out[0].split()[1]) if out else float("nan")
            note = (
                f"{compiled / forward:.2f} x eager"
                if out
                else (done.stderr.strip().splitlines() or ["failed"])[-1][:80]
            )
        except subprocess.TimeoutExpired:
            compiled, note = float("nan"), f"not done in {max(30, left):.0f} s"
        add("model limit (torch.compile)", compiled, note)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    title = (
        f"{args.model} @224 {PRECISION}, batch {batch}, {args.num_images} "
        f"photos 500x375 ({args.unique} unique), {name}, {os.cpu_count()} CPUs"
    )
    print(f"\n{title}")  # fmt: skip
    for label, value, note in rows:
        print(f"{label:62s} {value:9.1f} images/s  {note}")
    Path(args.json).mkdir(parents=True, exist_ok=True)
    (Path(args.json) / "gpu_check.json").write_text(json.dumps(
        {"title": title, "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
