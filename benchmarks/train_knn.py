"""Does training help? kNN accuracy after SSL vs random init, raw pixels and
LightlyTrain 0.18, on the same budget, over several seeds.

    python benchmarks/train_knn.py [--epochs 15] [--seeds 0 1 2] [--batch-size 64]
        [--methods simclr dino] [--peer ~/.cache/lt-peer/bin/lightly-train] [--quick]

Data: ``benchmarks/scenes.py``, crops of 8 real photos (class = photo) at 64 px,
train and val crops from disjoint parts of each photo. Each model embeds train and
val; the score is the accuracy of a 5-NN cosine, similarity-weighted vote of each
val embedding among the train embeddings. Rows, each over ``--seeds``:
- raw pixels (no seed);
- random init: the resnet18 that training starts from with that seed;
- ours: ``lightly_train.train`` on the train crops (labels unused) with the
  method's defaults and ``transform_args.image_size=64``; DINO adds a row for its
  student (the checkpoint holds the teacher);
- LightlyTrain 0.18: ``lightly-train pretrain ... method=simclr`` with the same
  model, epochs, batch size, image size and seed, embedded with its own ``embed``.
Prints mean, standard deviation and every seed's value.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
import torch.nn.functional as F
from PIL import Image
from scenes import write_scenes

import lightly_train
from lightly_train.checkpoint import (
    create_checkpoint,
    load_checkpoint_entry,
    save_checkpoint,
)
from lightly_train.data.files import list_image_files

MODEL = "torchvision/resnet18"
IMAGE_SIZE = 64
K, KNN_TEMPERATURE = 5, 0.07


def knn_accuracy(embeddings: torch.Tensor, filenames: list[str]) -> float:
    """Val accuracy of a cosine kNN over train; names are ``<split>/<label>/<file>``."""
    split = np.array([f.split("/")[0] for f in filenames])
    labels = torch.tensor([int(f.split("/")[1]) for f in filenames])
    train, val = torch.from_numpy(split == "train"), torch.from_numpy(split == "val")
    emb = F.normalize(embeddings.float(), dim=1)
    top_sim, top_idx = (emb[val] @ emb[train].T).topk(K, dim=1)  # (V, K)
    votes = torch.zeros(int(val.sum()), int(labels.max()) + 1)
    votes.scatter_add_(1, labels[train][top_idx], (top_sim / KNN_TEMPERATURE).exp())
    return (votes.argmax(dim=1) == labels[val]).float().mean().item()


def pixel_accuracy(data: Path) -> float:
    files = list_image_files(data)
    pixels = [np.asarray(Image.open(p), dtype=np.float32).ravel() for p in files.paths]
    return knn_accuracy(torch.from_numpy(np.stack(pixels)), files.filenames)


def ours_accuracy(data: Path, checkpoint: Path, out: Path) -> float:
    lightly_train.embed(
        out=out,
        data=data,
        checkpoint=checkpoint,
        image_size=IMAGE_SIZE,
        batch_size=128,
        overwrite=True,  # one file per kind of row, rewritten for each seed
    )
    result = torch.load(out, weights_only=True)
    return knn_accuracy(result["embeddings"], result["filenames"])


def train_ours(
    data: Path, out: Path, method: str, seed: int, args: argparse.Namespace
) -> Path:
    lightly_train.train(
        out=out,
        data=data,
        model=MODEL,
        method=method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        transform_args={"image_size": IMAGE_SIZE},
        accelerator="cpu",
        seed=seed,
        overwrite=True,
    )
    return out / "checkpoints" / "last.ckpt"


def student_checkpoint(checkpoint: Path, out: Path) -> Path:
    """A checkpoint of DINO's student, from the Lightning state dict beside the
    teacher that the lightly-train entry holds."""
    entry = load_checkpoint_entry(checkpoint)
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    prefix = "embedding_model."
    student = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    assert student.keys() == entry["embedding_model_state_dict"].keys()
    return save_checkpoint(out, {**entry, "embedding_model_state_dict": student})


def peer_env() -> dict[str, str]:
    """The peer's own environment: its package is also named ``lightly_train``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "LIGHTLY_TRAIN_EVENTS_DISABLED": "1"}


def peer_accuracy(
    exe: str, train: Path, data: Path, root: Path, seed: int, args: argparse.Namespace
) -> float:
    out = root / f"peer_{seed}"
    run = [
        exe,
        "pretrain",
        f"out={out}",
        f"data={train}",
        f"model={MODEL}",
        "method=simclr",
        f"epochs={args.epochs}",
        f"batch_size={args.batch_size}",
        f"transform_args.image_size=[{IMAGE_SIZE},{IMAGE_SIZE}]",
        f"seed={seed}",
        "accelerator=cpu",
        "overwrite=true",
    ]
    subprocess.run(run, env=peer_env(), check=True, capture_output=True)
    emb = root / f"peer_{seed}.pth"
    subprocess.run(
        [
            exe,
            "embed",
            f"out={emb}",
            f"data={data}",
            f"checkpoint={out / 'checkpoints' / 'last.ckpt'}",
            "format=torch",
            f"image_size={IMAGE_SIZE}",
            "accelerator=cpu",
            "overwrite=true",
        ],
        env=peer_env(),
        check=True,
        capture_output=True,
    )
    result = torch.load(emb, weights_only=True)
    return knn_accuracy(result["embeddings"], list(result["filenames"]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--per-class", type=int, default=120, help="crops per class, 2/3 train"
    )
    parser.add_argument("--methods", nargs="+", default=["simclr", "dino"])
    parser.add_argument("--peer", help="a LightlyTrain 0.18 lightly-train executable")
    parser.add_argument(
        "--work", type=Path, help="keep runs here (default: a temp dir)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 2 epochs, 30 crops per class: a smoke run",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.per_class = [0], 2, 30
    return args


def report(results: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(
        f"\n{MODEL} @{IMAGE_SIZE} px, {args.epochs} epochs, batch "
        f"{args.batch_size}, seeds {args.seeds}; {K}-NN accuracy on val crops"
    )
    print(f"{'model':28} {'mean':>6} {'std':>6}  per seed")
    for name, values in results.items():
        std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        seeds = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:28} {np.mean(values):6.3f} {std:6.3f}  {seeds}")
    base = np.mean(results["random init"])
    for name, values in results.items():
        if name not in ("raw pixels", "random init"):
            print(f"{name} - random init = {np.mean(values) - base:+.3f}")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        data = root / "scenes"
        write_scenes(data, args.per_class, IMAGE_SIZE)
        results: dict[str, list[float]] = {"raw pixels": [pixel_accuracy(data)]}
        ray.init(logging_level=logging.WARNING)  # one Ray for every run and embed
        try:
            for seed in args.seeds:
                start = time.perf_counter()
                ckpt = create_checkpoint(
                    root / f"random_{seed}.ckpt",
                    model=MODEL,
                    seed=seed,
                    image_size=(IMAGE_SIZE, IMAGE_SIZE),
                )
                acc = ours_accuracy(data, ckpt, root / "random.pth")
                results.setdefault("random init", []).append(acc)
                for method in args.methods:
                    ckpt = train_ours(
                        data / "train", root / f"{method}_{seed}", method, seed, args
                    )
                    acc = ours_accuracy(data, ckpt, root / f"{method}.pth")
                    results.setdefault(f"ours {method}", []).append(acc)
                    if method == "dino":
                        student = student_checkpoint(ckpt, root / "student.ckpt")
                        acc = ours_accuracy(data, student, root / "student.pth")
                        results.setdefault("ours dino, student", []).append(acc)
                if args.peer:
                    acc = peer_accuracy(
                        args.peer, data / "train", data, root, seed, args
                    )
                    results.setdefault("LightlyTrain 0.18 simclr", []).append(acc)
                print(
                    f"seed {seed} done in {time.perf_counter() - start:.0f} s: "
                    f"{ {k: round(v[-1], 3) for k, v in results.items()} }",
                    flush=True,
                )
        finally:
            ray.shutdown()
    report(results, args)


if __name__ == "__main__":
    main()
