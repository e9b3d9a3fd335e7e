"""GPU check of ``embed``: resnet50 @224 bf16 on generated 500x375 JPEG photos.

    python benchmarks/gpu_check.py [--num-images 24000] [--device cuda]

Prints, in one table (and writes it as JSON to ``--json``, default ``$OUT``):
- model limit: the Embedder's forward on ready uint8 batches on the device (batch
  256, bf16 autocast, channels_last); ``torch.compile``'s, last, in a subprocess
  with a time limit;
- GPU decode limit: ``decode_on_device`` (``torchvision.io.decode_jpeg`` with
  nvJPEG, then the antialiased resize, in float32 and in float16) on batches of
  the photos' bytes;
- actor work: the Embedder on ``decode_batch(..., device_jpeg=True)`` batches
  (decode, resize, forward), in 1 and 2 threads: an actor's rate without Ray;
- CPU decode limit: PIL read + decode + resize in one process per CPU;
- a fresh model actor's start-up, step by step (imports, CUDA, model, batches);
- both decoders' limits on photos of 2000x1500 and 4000x3000, if time is left;
- embed (``lightly_train.embed`` on one local Ray, after a warm-up run), for each
  plan (JPEG decode on the model's device or in CPU tasks; actors per GPU; batches
  in flight per actor; batch size): the steady rate (between the first and the
  last progress line, 10% and 90% of the photos, so the actor pool's start-up
  and the tail are out) against ``min(model limit, decode limit)`` of its path,
  the rate end to end with the start-up, and the GPU's mean utilisation.

``--num-images`` files are links to ``--unique`` generated photos (page cache, as
a warm dataset). ``--device cpu --num-images 400 --unique 100 --model
torchvision/resnet18 --batch-size 32`` dry-runs the same code without a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_probes import (  # noqa: E402
    GpuLoad,
    ProgressLines,
    cpu_decode_limit,
    device_decode_rate,
    large_photo_limits,
    link_photos,
    rate,
    startup_probe,
)
from photos import make_photos  # noqa: E402

from lightly_train import sizing  # noqa: E402
from lightly_train.checkpoint import create_checkpoint, load_checkpoint_entry  # noqa: E402
from lightly_train.data import device_decode  # noqa: E402
from lightly_train.data.decode import decode_batch  # noqa: E402
from lightly_train.embedding.embedder import Embedder  # noqa: E402

SIZE = (224, 224)
PRECISION = "bf16-mixed"
# (jpeg_decode, actors per GPU, batches in flight per actor, batch size). On an
# H200 (stop 24) 2 actors beat 1 at batch 256 and 1 at 512 beat both; 2 at 512,
# the shipped batch with two processes' decode locks, was not measured yet.
PLANS = [("model", 1, 2, 256), ("model", 1, 2, 512), ("model", 2, 2, 256),
         ("model", 2, 2, 512), ("tasks", 1, 2, 256)]  # fmt: skip
SHIPPED_RESIZE = dict(device_decode.RESIZE_DTYPES)


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

    large = link_photos(unique, root / "large", args.num_images)
    # One Ray for every run, so the timed runs pay no Ray start-up.
    ray.init(address="local", include_dashboard=False,
             _system_config={"worker_niceness": 0})  # fmt: skip
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    lines = ProgressLines()
    logger = logging.getLogger("lightly_train._progress")
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)

    def run(data: Path, mode: str, batch: int) -> float:
        lines.points.clear()
        start = time.time()
        lightly_train.embed(
            out=root / "e.pth", data=data, checkpoint=ckpt, precision=PRECISION,
            jpeg_decode=mode, overwrite=True, accelerator=accelerator,
            batch_size=batch,
        )  # fmt: skip
        return start

    # Warm-up: Ray's worker processes, and the page cache (the links' targets).
    run(root / "unique", "model", args.batch_size)
    chosen = (PLANS if args.plans == "all"
              else [PLANS[int(i)] for i in args.plans.split(",")])  # fmt: skip
    for mode, per_gpu, calls, batch in chosen:
        label = f"jpeg_decode={mode}, {per_gpu} actor/GPU x {calls}, batch {batch}"
        if time.monotonic() > args.deadline:
            add(f"embed {label}", float("nan"), "skipped: time")
            continue
        sizing.GPU_ACTORS_PER_DEVICE, sizing.GPU_CALLS_PER_ACTOR = per_gpu, calls
        with GpuLoad(args.device) as load:
            start = run(large, mode, batch)
        wall = time.time() - start
        # The steady rate: between the first and the last progress line (10% and
        # 90% of the images), so the actor pool's start-up and the tail are out.
        if len(lines.points) < 2 or lines.points[-1][0] <= lines.points[0][0]:
            add(f"embed {label}", float("nan"), "too few progress lines: more images")
            continue
        (t0, d0), (t1, d1) = lines.points[0], lines.points[-1]
        steady = (d1 - d0) / (t1 - t0)
        startup = t0 - start - d0 / steady
        bound = min(limits["forward"], limits[mode])  # limits[mode]: its decode
        add(f"embed steady, {label}", steady,
            f"{steady / bound:.2f} x min(model, decode)")  # fmt: skip
        add(f"  end to end, {args.num_images} photos", args.num_images / wall,
            f"wall {wall:.1f} s, start-up {startup:.1f} s, "
            f"GPU busy {load.mean:.0f}%")  # fmt: skip
    ray.shutdown()


def measure_limits(args, unique: list[Path], ckpt: Path, add) -> dict[str, float]:
    """The model's, the device decoder's and the CPUs' limits, and an actor's
    work without Ray: ``{"forward", "model" (device decode), "tasks" (PIL)}``."""
    device, batch = args.device, args.batch_size
    embedder = Embedder(load_checkpoint_entry(ckpt), device, PRECISION, image_size=SIZE)
    limits = {"forward": model_rate(embedder, args)}
    add("model limit (eager, channels_last)", limits["forward"], f"batch {batch}")
    jpegs = [np.array([p.read_bytes() for p in unique[i : i + batch]], object)
             for i in range(0, len(unique) - batch + 1, batch)]  # fmt: skip
    resized = {}
    for dtype in (torch.float32, torch.float16):
        device_decode.RESIZE_DTYPES[device] = dtype
        try:
            resized[dtype] = device_decode_rate(jpegs, device, args.seconds)
        except RuntimeError as ex:  # e.g. no float16 resize on this device
            resized[dtype] = float("nan")
            print(f"[gpu_check] resize in {dtype}: {ex}")
        add(f"decode limit ({device}: decode_jpeg + resize in {dtype})",
            resized[dtype])  # fmt: skip
    device_decode.RESIZE_DTYPES.clear()  # back to what ships
    device_decode.RESIZE_DTYPES.update(SHIPPED_RESIZE)
    limits["model"] = resized[SHIPPED_RESIZE.get(device, torch.float32)]
    batches = [decode_batch({"idx": np.arange(batch), "path": np.array(
        [str(p) for p in unique[i : i + batch]])}, SIZE, device_jpeg=True)
        for i in range(0, len(unique) - batch + 1, batch)]  # fmt: skip
    for threads in (1, 2):
        add(f"actor work without Ray (decode+forward), {threads} thread(s)",
            actor_work(embedder, batches, threads))  # fmt: skip
    del embedder
    if device == "cuda":
        torch.cuda.empty_cache()
    paths = [unique[i % len(unique)]
             for i in range(max(args.num_images // 4, len(unique)))]  # fmt: skip
    limits["tasks"] = cpu_decode_limit(paths)
    add(f"decode limit (PIL, {os.cpu_count()} CPUs)", limits["tasks"],
        f"{limits['tasks'] / (os.cpu_count() or 1):.0f} per core")  # fmt: skip
    return limits


def measure_compile(args, ckpt: Path, forward: float, add) -> None:
    """``torch.compile``'s model limit, in a subprocess with the time that is left."""
    left = max(30.0, args.deadline - time.monotonic() + 60)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--compile-only", str(ckpt),
             "--device", args.device, "--model", args.model, "--batch-size",
             str(args.batch_size), "--seconds", str(args.seconds)],
            capture_output=True, text=True, timeout=left,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        add("model limit (torch.compile)", float("nan"), f"not done in {left:.0f} s")
        return
    out = [x for x in done.stdout.splitlines() if x.startswith("COMPILED")]
    if not out:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1][:80]
        add("model limit (torch.compile)", float("nan"), why)
        return
    compiled = float(out[0].split()[1])
    add("model limit (torch.compile)", compiled, f"{compiled / forward:.2f} x eager")


def cli_runs(root: Path, ckpt: Path, n: int, add) -> None:
    """The CLI as a user runs it, defaults only, in a fresh process with its own
    Ray (imports, Ray start, actors, write): torch and parquet outputs."""
    for fmt in ("torch", "parquet"):
        out = root / f"cli-{fmt}"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lightly_train.cli", "embed", f"out={out}",
             f"data={root / 'large'}", f"checkpoint={ckpt}", f"format={fmt}",
             "precision=bf16-mixed"],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        wall = time.perf_counter() - start
        last = (done.stderr.strip().splitlines() or ["?"])[-1][:100]
        add(f"lightly-train embed format={fmt}, {n} photos, CLI", n / wall,
            f"wall {wall:.1f} s, exit {done.returncode}: {last}")  # fmt: skip


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
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--plans", default="all", help="indices into PLANS: 0,3")
    parser.add_argument("--cli", action="store_true", help="also the CLI runs")
    args = parser.parse_args()
    args.deadline = time.monotonic() + args.budget
    if args.compile_only:  # the subprocess: one number
        print(f"COMPILED {compile_rate(args, args.compile_only):.1f}")
        return
    rows: list[tuple[str, float, str]] = []

    def add(label: str, value: float, note: str = "") -> None:
        rows.append((label, value, note))
        print(f"[gpu_check] {label:62s} {value:9.1f} images/s  {note}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        unique = make_photos(root / "unique", args.unique, processes=os.cpu_count())
        ckpt = create_checkpoint(root / "m.ckpt", model=args.model)
        limits = measure_limits(args, unique, ckpt, add)
        probe = startup_probe(ckpt, root / "unique", args.device)
        print(f"[gpu_check] a fresh model actor: {probe}", flush=True)
        embed_plans(args, root, unique, ckpt, limits, add)
        if args.cli:
            cli_runs(root, ckpt, args.num_images, add)
        if time.monotonic() < args.deadline:
            large_photo_limits(root, args.device, args.seconds, add)
        if not args.no_compile:
            measure_compile(args, ckpt, limits["forward"], add)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    title = (
        f"{args.model} @224 {PRECISION}, batch {args.batch_size}, {args.num_images} "
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
