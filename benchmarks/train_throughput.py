"""SimCLR training: kNN accuracy before and after, and Ray Train's cost vs Lightning.

    python benchmarks/train_knn.py [--epochs 40] [--throughput-epochs 4] [--seed 0]
                                   [--batch-size 64] [--num-images 1797] [--quick]

Data: scikit-learn's bundled handwritten digits (1797 real 8x8 scans, 10 classes, no
download), written as 32x32 PNGs to ``train/<label>/`` and ``val/<label>/`` (a fixed
80/20 split). Measures, on this machine:
- knn: accuracy of a 20-NN cosine, similarity-weighted vote of the val embeddings
  against the train embeddings (both from ``lightly_train.embed``), for a random-init
  resnet18 and after ``lightly_train.train(method="simclr")`` on the train images
  (labels unused); raw pixels as a reference;
- ray: ``lightly_train.train`` (Ray Train, 1 and 2 CPU workers) for
  ``--throughput-epochs``, steady-state images/s from ``out/metrics.jsonl`` (the
  first epoch left out) and wall time with Ray's start-up;
- plain: the same method, transform, loader, batch size and epochs in a single-process
  ``lightning.Trainer`` in this process, timed the same way by a callback;
- step limit: the SimCLR step alone on ready tensors, with the torch threads the run
  has (all CPUs for one worker, one per worker for two);
and prints ray / plain: 1.0 means Ray Train adds no cost to the training loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import lightning
import numpy as np
import ray
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from PIL import Image
from sklearn.datasets import load_digits

import lightly_train
from lightly_train.checkpoint import create_checkpoint
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
K, KNN_TEMPERATURE = 20, 0.07


def write_digits(root: Path, num_images: int) -> int:
    """Writes the first ``num_images`` of a fixed shuffle; the last 20% are val."""
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))[:num_images]
    num_train = round(0.8 * len(order))
    for rank, i in enumerate(order):
        split = "train" if rank < num_train else "val"
        folder = root / split / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
        image = Image.fromarray(pixels, mode="L")
        image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(
            folder / f"{i:04d}.png"
        )
    return num_train


def knn_accuracy(embeddings: torch.Tensor, filenames: list[str]) -> float:
    """Val accuracy of a cosine kNN over train; names are ``<split>/<label>/<file>``."""
    split = np.array([f.split("/")[0] for f in filenames])
    labels = torch.tensor([int(f.split("/")[1]) for f in filenames])
    train, val = torch.from_numpy(split == "train"), torch.from_numpy(split == "val")
    emb = F.normalize(embeddings.float(), dim=1)
    sim = emb[val] @ emb[train].T  # (V, T)
    top_sim, top_idx = sim.topk(min(K, int(train.sum())), dim=1)  # (V, K)
    weights = (top_sim / KNN_TEMPERATURE).exp()  # InstDisc / DINO weighting
    votes = torch.zeros(int(val.sum()), 10)
    votes.scatter_add_(1, labels[train][top_idx], weights)
    return (votes.argmax(dim=1) == labels[val]).float().mean().item()


def embed_accuracy(root: Path, checkpoint: Path, name: str) -> float:
    out = root / f"{name}.pth"
    lightly_train.embed(out=out, data=root / "digits", checkpoint=checkpoint,
                        image_size=IMAGE_SIZE, batch_size=256)  # fmt: skip
    result = torch.load(out, weights_only=True)
    return knn_accuracy(result["embeddings"], result["filenames"])


def pixel_accuracy(root: Path) -> float:
    files = list_image_files(root / "digits")
    pixels = [np.asarray(Image.open(p), dtype=np.float32).ravel() for p in files.paths]
    return knn_accuracy(torch.from_numpy(np.stack(pixels)), files.filenames)


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
        out=out, data=root / "digits" / "train", model=MODEL, method="simclr",
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
    parser.add_argument("--epochs", type=int, default=40, help="of the kNN run")
    parser.add_argument("--throughput-epochs", type=int, default=4,
                        help="of each of the three timed runs")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-images", type=int, default=1797, help="at most 1797")
    parser.add_argument("--seed", type=int, default=0,
                        help="of training and the random-init model")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="500 images, 2 epochs, batch 64: a smoke run")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.num_images, args.epochs, args.throughput_epochs = 500, 2, 2
    if min(args.epochs, args.throughput_epochs) < 2:
        parser.error("Epochs must be at least 2: the first epoch is left out.")
    return args


def measure(root: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """Returns kNN accuracies and (images/s, wall seconds) of each runner."""
    knn_run = train_ray(root, args, args.epochs, devices=1, name="knn")
    # With the training seed these are the weights training starts from.
    ckpt = create_checkpoint(root / "random.ckpt", model=MODEL, seed=args.seed,
                             image_size=(IMAGE_SIZE, IMAGE_SIZE))  # fmt: skip
    last = root / "knn" / "checkpoints" / "last.ckpt"
    ray.init(logging_level=logging.WARNING)  # one Ray start for both embeds
    try:
        knn = {"raw pixels": pixel_accuracy(root),
               "random init": embed_accuracy(root, ckpt, "random"),
               "after SimCLR": embed_accuracy(root, last, "trained")}  # fmt: skip
    finally:
        ray.shutdown()
    epochs = args.throughput_epochs
    runs = {"ray, 1 worker": knn_run if epochs == args.epochs else
            train_ray(root, args, epochs, devices=1, name="ray1")}  # fmt: skip
    if (os.cpu_count() or 1) >= 2 and args.batch_size % 2 == 0:
        runs["ray, 2 workers"] = train_ray(root, args, epochs, devices=2, name="ray2")
    runs["plain lightning"] = train_plain(root, args, epochs)
    if epochs != args.epochs:
        runs[f"ray, 1 worker, {args.epochs} ep"] = knn_run
    return knn, runs


def main() -> None:
    args = parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        num_train = write_digits(root / "digits", args.num_images)
        knn, runs = measure(root, args)
    # One worker uses all CPUs as torch threads; two workers one thread each.
    limit_1 = step_limit(args.batch_size, threads=cpus)
    limit_2 = step_limit(args.batch_size // 2, threads=1) * 2

    print(f"\n{MODEL} SimCLR on {num_train} train / {args.num_images - num_train} "
          f"val digits at {IMAGE_SIZE} px, batch {args.batch_size}, {cpus} CPU(s); "
          f"kNN run {args.epochs} epochs, timed runs {args.throughput_epochs}"
          )  # fmt: skip
    for name, accuracy in knn.items():
        print(f"kNN (k={K}) {name:13} {accuracy:6.1%}")
    gain = knn["after SimCLR"] - knn["random init"]
    print(f"kNN after SimCLR - random init = {gain:+.1%}")
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
