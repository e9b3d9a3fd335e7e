"""Embed throughput against the limits measured in the same run.

    python benchmarks/embed_throughput.py [--num-images 512] [--image-size 224]

Measures, on this machine:
- forward: the model alone on ready tensors, with the threads one model actor gets,
  times the number of actors (the model-side limit of the pipeline);
- decode: read + decode + resize in one process, times the CPUs left for decode tasks
  (the input-side limit);
- embed: ``lightly_train.embed`` end to end on a running Ray (start-up excluded, one
  warm-up run first), writing the torch format.
and prints embed / min(forward, decode): 1.0 means the pipeline is as fast as its
slowest stage allows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from PIL import Image

import lightly_train
from lightly_train.checkpoint import create_checkpoint, load_checkpoint_entry
from lightly_train.data.decode import load_image, read_file
from lightly_train.embedding.embedder import Embedder
from lightly_train.runtime import plan_actors

SAMPLES = Path(__file__).parents[1] / "examples" / "sample_images"


def make_images(root: Path, n: int) -> list[Path]:
    """JPEGs of 320x240 crops of the bundled photos, so decode work is realistic."""
    files = sorted(SAMPLES.glob("*.jpg"))
    photos = [Image.open(f).convert("RGB").resize((400, 300)) for f in files]
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        x, y = rng.integers(0, 80), rng.integers(0, 60)
        path = root / f"{i:06d}.jpg"
        photos[i % len(photos)].crop((x, y, x + 320, y + 240)).save(path, quality=90)
        paths.append(path)
    return paths


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="torchvision/resnet18")
    args = parser.parse_args()
    size = (args.image_size, args.image_size)

    ray.init()
    plan = plan_actors("auto", "auto", "auto", "32-true", ray.cluster_resources())
    cpus = int(ray.cluster_resources()["CPU"])
    decode_cpus = cpus - plan.num_actors * plan.cpus_per_actor
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.num_images)
        ckpt = create_checkpoint(root / "model.ckpt", model=args.model)

        sample = paths[: min(len(paths), 128)]
        decode = rate(lambda: [load_image(read_file(str(p)), size) for p in sample],
                      len(sample)) * decode_cpus  # fmt: skip

        device = "cuda" if plan.accelerator == "gpu" else "cpu"
        embedder = Embedder(load_checkpoint_entry(ckpt), device, "32-true",
                            plan.cpus_per_actor)  # fmt: skip
        batch = np.random.default_rng(0).integers(
            0, 256, (args.batch_size, *size, 3), dtype=np.uint8
        )
        embedder.embed(batch)  # warm-up
        steps = max(2, 256 // args.batch_size)
        forward = rate(lambda: [embedder.embed(batch) for _ in range(steps)],
                       steps * args.batch_size) * plan.num_actors  # fmt: skip
        torch.set_num_threads(cpus)

        def run(i: int) -> None:
            lightly_train.embed(out=root / f"e{i}.pth", data=root / "images",
                                checkpoint=ckpt, image_size=size,
                                batch_size=args.batch_size)  # fmt: skip

        run(0)  # warm-up: worker processes and imports
        embed = rate(lambda: run(1), len(paths))
    ray.shutdown()

    limit = min(forward, decode)
    print(f"\nmodel {args.model}, {args.num_images} images -> {size}, "
          f"{plan.num_actors} {plan.accelerator} actor(s) x {plan.cpus_per_actor} CPU, "
          f"{decode_cpus} CPU(s) for decode")  # fmt: skip
    print(f"forward limit  {forward:8.1f} images/s")
    print(f"decode limit   {decode:8.1f} images/s")
    print(f"embed          {embed:8.1f} images/s")
    print(f"embed / min(forward, decode) = {embed / limit:.2f}")


if __name__ == "__main__":
    main()
