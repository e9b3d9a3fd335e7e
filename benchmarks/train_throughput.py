"""SimCLR training throughput: Ray Train's cost vs a plain Lightning loop.

    python benchmarks/train_throughput.py [--epochs 4] [--seed 0] [--batch-size 64]
                                          [--num-images 1797] [--quick]

Data: scikit-learn's bundled handwritten digits (1797 real 8x8 scans, no download),
written as 32x32 PNGs. Measures, on this machine:
- ray: ``lightly_train.train`` (Ray Train, 1 and 2 CPU workers) for ``--epochs``,
  steady-state images/s from ``out/metrics.jsonl`` (the first epoch left out) and
  wall time with Ray's start-up;
- plain: the same method, transform, loader, batch size and epochs in a single-process
  ``lightning.Trainer`` in this process, timed the same way by a callback;
- step limit: the SimCLR step alone on ready tensors, with the torch threads the run
  has (all CPUs for one worker, one per worker for two);
and prints ray / plain: 1.0 means Ray Train adds no cost to the training loop.
Training quality (kNN accuracy) is ``benchmarks/train_knn.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import lightning
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from PIL import Image
from sklearn.datasets import load_digits

import lightly_train
from lightly_train.data.files import list_image_files
from lightly_train.methods import get_method
from lightly_train.models import build_embedding_model
from lightly_train.training.data import build_dataloader
from lightly_train.training.plan import plan_workers

IMAGE_SIZE = 32
MODEL = "torchvision/resnet18"
# Digits are grey, centred and small: milder crops than ImageNet's (0.08, 1), no
# colour or blur (nothing to learn from them on grey 32 px images).
TRANSFORM_ARGS = {
    "image_size": IMAGE_SIZE,
    "crop_scale": (0.4, 1.0),
    "color_jitter_strength": 0.5,
    "grayscale_prob": 0.0,
    "blur_prob": 0.0,
}
METHOD_ARGS = {"temperature": 0.2}  # small batches: a softer NT-Xent
OPTIM_ARGS = {"warmup_epochs": 2}  # the paper's 10 would be half of a short run


def write_digits(root: Path, num_images: int) -> None:
    """Writes the first ``num_images`` of a fixed shuffle to ``train/<label>/``."""
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))[:num_images]
    for i in order:
        folder = root / "train" / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
        image = Image.fromarray(pixels, mode="L")
        image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(
            folder / f"{i:04d}.png"
        )


def steady_rate(rows: list[tuple[int, int, float]], batch_size: int) -> float:
    """images/s over ``(epoch, step, time)`` rows, from the first row of epoch 1 on."""
    rows = [r for r in rows if r[0] >= 1]
    if len(rows) < 2:
        raise SystemExit("Too few steps after the first epoch; use more --epochs.")
    (_, step0, t0), (_, step1, t1) = rows[0], rows[-1]
    return (step1 - step0) * batch_size / (t1 - t0)


Result = tuple[float, float]  # (images/s, wall seconds)


def train_ray(root: Path, args: argparse.Namespace, epochs: int, devices: int,
              name: str) -> Result:  # fmt: skip
    """Returns (images/s, wall seconds) of ``lightly_train.train``; Ray starts in it."""
    out = root / name
    start = time.perf_counter()
    lightly_train.train(
        out=out, data=root / "digits", model=MODEL, method="simclr",
        method_args=METHOD_ARGS, optim_args=OPTIM_ARGS, transform_args=TRANSFORM_ARGS,
        epochs=epochs, batch_size=args.batch_size, accelerator="cpu",
        devices=devices, seed=args.seed,
    )  # fmt: skip
    wall = time.perf_counter() - start
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    rows = [(r["epoch"], r["step"], r["time"]) for r in rows if "images_per_s" in r]
    return steady_rate(rows, args.batch_size), wall


class StepTimes(Callback):
    """Records ``(epoch, step, time)`` after every optimizer step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float]] = []

    def on_train_batch_end(self, trainer: lightning.Trainer, *args: object) -> None:
        self.rows.append((trainer.current_epoch, trainer.global_step, time.time()))


def train_plain(root: Path, args: argparse.Namespace, epochs: int) -> Result:
    """Returns (images/s, wall seconds) of the same training without Ray."""
    start = time.perf_counter()
    cpus = {"CPU": float(os.cpu_count() or 1)}  # what a local Ray would have
    plan = plan_workers("cpu", 1, 1, "auto", "32-true", cpus)
    lightning.seed_everything(args.seed, workers=True, verbose=False)
    method_cls = get_method("simclr")
    paths = list_image_files(root / "digits" / "train").paths
    loader = build_dataloader(paths, method_cls.transform(TRANSFORM_ARGS),
                              batch_size=args.batch_size,
                              num_workers=plan.loader_workers,
                              seed=args.seed)  # fmt: skip
    steps = len(paths) // args.batch_size
    method = method_cls(build_embedding_model(MODEL), METHOD_ARGS, OPTIM_ARGS,
                        total_steps=epochs * steps, steps_per_epoch=steps,
                        global_batch_size=args.batch_size)  # fmt: skip
    timer = StepTimes()
    trainer = lightning.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
        # lightly_train saves a checkpoint every epoch too; keep the work the same.
        callbacks=[ModelCheckpoint(dirpath=root / "plain", save_last=True), timer],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(eval mode|num_workers|log_every).*")
        trainer.fit(method, loader)
    return steady_rate(timer.rows, args.batch_size), time.perf_counter() - start


def step_limit(batch_size: int, threads: int, steps: int = 4) -> float:
    """images/s of the SimCLR step alone (forward, backward, optimizer) on ready
    tensors with ``threads`` torch threads: what no loader or runner can beat."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    method = get_method("simclr")(build_embedding_model(MODEL), METHOD_ARGS,
                                  OPTIM_ARGS, global_batch_size=batch_size)  # fmt: skip
    optimizer = method.configure_optimizers()["optimizer"]
    views = [torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE) for _ in range(2)]

    def step() -> None:
        optimizer.zero_grad()
        method.compute_loss(views).backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    torch.set_num_threads(default_threads)
    return steps * batch_size / seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4,
                        help="of each of the three timed runs")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-images", type=int, default=1797, help="at most 1797")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="500 images, 2 epochs, batch 64: a smoke run")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.num_images, args.epochs = 500, 2
    if args.epochs < 2:
        parser.error("Epochs must be at least 2: the first epoch is left out.")
    return args


def measure(root: Path, args: argparse.Namespace) -> dict[str, Result]:
    """Returns (images/s, wall seconds) of each runner."""
    runs = {"ray, 1 worker": train_ray(root, args, args.epochs, devices=1,
                                       name="ray1")}  # fmt: skip
    if (os.cpu_count() or 1) >= 2 and args.batch_size % 2 == 0:
        runs["ray, 2 workers"] = train_ray(root, args, args.epochs, devices=2,
                                           name="ray2")  # fmt: skip
    runs["plain lightning"] = train_plain(root, args, args.epochs)
    return runs


def main() -> None:
    args = parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_digits(root / "digits", args.num_images)
        runs = measure(root, args)
    # One worker uses all CPUs as torch threads; two workers one thread each.
    limit_1 = step_limit(args.batch_size, threads=cpus)
    limit_2 = step_limit(args.batch_size // 2, threads=1) * 2

    print(
        f"\n{MODEL} SimCLR on {args.num_images} digits at {IMAGE_SIZE} px, batch "
        f"{args.batch_size}, {cpus} CPU(s), {args.epochs} epochs per run"
    )
    print(f"step limit, {cpus} threads  {limit_1:7.1f} images/s")
    print(f"step limit, 2 x 1 thread  {limit_2:7.1f} images/s")
    for name, (rate, wall) in runs.items():
        limit = limit_2 if "2 workers" in name else limit_1
        print(f"{name:24} {rate:7.1f} images/s = {rate / limit:.2f} x limit, "
              f"wall {wall:6.1f} s")  # fmt: skip
    plain = runs["plain lightning"][0]
    for name in ("ray, 1 worker", "ray, 2 workers"):
        if name in runs:
            print(f"{name} / plain lightning = {runs[name][0] / plain:.2f}")


if __name__ == "__main__":
    main()
