"""GPU check of ``embed``: resnet50 @224 bf16 on generated 500x375 JPEG photos.

    python benchmarks/gpu_check.py [--num-images 4000] [--device cuda]

Prints, in one table:
- model limit: the Embedder's forward on ready uint8 batches on the device (batch
  256, bf16 autocast, channels_last), with and without ``torch.compile``;
- GPU decode limit: ``torchvision.io.decode_jpeg(..., device)`` on batches of the
  photos' bytes plus the antialiased resize (the ``jpeg_decode="model"`` path);
- CPU decode limit: PIL read + decode + resize in one process per CPU;
- embed (``lightly_train.embed`` on one local Ray, after a warm-up run) with
  ``jpeg_decode="model"`` and ``"tasks"``: the steady rate (marginal between a
  quarter of the photos and all of them) against ``min(model limit, decode limit)``
  of its path, and the rate end to end on all photos.

``--device cpu --num-images 200 --model torchvision/resnet18`` dry-runs the same
code on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from photos import make_photos  # noqa: E402

from lightly_train.checkpoint import create_checkpoint, load_checkpoint_entry  # noqa: E402
from lightly_train.data.decode import load_image  # noqa: E402
from lightly_train.data.device_decode import decode_on_device  # noqa: E402
from lightly_train.embedding.embedder import Embedder  # noqa: E402

SIZE = (224, 224)


def rate(fn, n: int, seconds: float = 10.0, sync=lambda: None) -> float:
    fn()  # warm-up (cudnn.benchmark, compile)
    sync()
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn()
        done += n
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=4000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="torchvision/resnet50")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    device, batch = args.device, args.batch_size
    precision = "bf16-mixed"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_photos(root / "photos", args.num_images)
        ckpt = create_checkpoint(root / "m.ckpt", model=args.model)
        entry = load_checkpoint_entry(ckpt)
        images = np.random.default_rng(0).integers(0, 256, (batch, *SIZE, 3), np.uint8)
        model = {}
        for compiled in (False, True):
            embedder = Embedder(entry, device, precision, compile=compiled)
            try:
                model[compiled] = rate(lambda e=embedder: e.embed(images), batch,
                                       args.seconds, sync)  # fmt: skip
            except Exception as ex:  # compile needs a toolchain; report, go on
                print(f"torch.compile failed: {type(ex).__name__}: {ex}")
                model[compiled] = float("nan")
        rows.append(("model limit (eager)", model[False], f"batch {batch}, bf16"))
        rows.append(("model limit (torch.compile)", model[True],
                     f"{model[True] / model[False]:.2f} x eager"))  # fmt: skip
        data = np.array([p.read_bytes() for p in paths[:batch]], dtype=object)
        target = torch.zeros((len(data), 3, *SIZE), dtype=torch.uint8, device=device)
        errors = np.full(len(data), "", dtype=object)
        gpu_decode = rate(lambda: decode_on_device(data, target, errors), len(data),
                          args.seconds, sync)  # fmt: skip
        rows.append((f"decode limit ({device}, decode_jpeg + resize)", gpu_decode, ""))
        cpu_decode = cpu_decode_limit(paths)
        rows.append((f"decode limit (PIL, {os.cpu_count()} CPUs)", cpu_decode, ""))

        import ray

        import lightly_train

        # One Ray for both runs, so the timed run pays no Ray start-up.
        ray.init(address="local", include_dashboard=False,
                 _system_config={"worker_niceness": 0})  # fmt: skip
        quarter = root / "quarter"  # links to the first quarter of the photos
        quarter.mkdir()
        for p in paths[: len(paths) // 4]:
            (quarter / p.name).symlink_to(p)
        for mode, decode in (("model", gpu_decode), ("tasks", cpu_decode)):
            walls = []
            for data in (quarter, quarter, root / "photos"):  # the first: warm-up
                start = time.perf_counter()
                lightly_train.embed(
                    out=root / f"{mode}.pth", data=data, checkpoint=ckpt,
                    precision=precision, jpeg_decode=mode, overwrite=True,
                    accelerator="gpu" if device == "cuda" else "cpu",
                )  # fmt: skip
                walls.append(time.perf_counter() - start)
            # The marginal rate between the two sizes: the actor pool's start-up
            # (every call starts one) cancels out.
            embed = (len(paths) - len(paths) // 4) / (walls[2] - walls[1])
            bound = min(model[False], decode)
            rows.append((f"embed steady, jpeg_decode={mode}", embed,
                         f"{embed / bound:.2f} x min(model, decode)"))  # fmt: skip
            rows.append((f"embed {len(paths)} photos end to end, {mode}",
                         len(paths) / walls[2], f"wall {walls[2]:.1f} s"))  # fmt: skip
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"\n{args.model} @224 {precision}, {args.num_images} photos 500x375, {name}")
    for label, value, note in rows:
        print(f"{label:45s} {value:9.1f} images/s  {note}")


if __name__ == "__main__":
    main()
