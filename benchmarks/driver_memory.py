"""Driver memory against the number of images: the ``lightly-train embed`` CLI's peak
RSS at a small and a large number of tiny images, per output format.

    python benchmarks/driver_memory.py [--small 10000] [--large 200000] [--work DIR]
                                       [--runner auto|ray|local]

The images are 8x8 PNGs (links to 16 files under distinct names) embedded by
mobilenet_v3_small at 32 px, so decoding and the model cost little and what grows is
the driver's own memory. Two peaks of the CLI process (the driver only; Ray's
processes are not in them): ``VmHWM``, which also counts the pages of Ray's
shared-memory object store that the driver has mapped to read blocks (memory of
the object store, whose size Ray caps, not of the driver), and the peak of
``RssAnon``, the driver's private memory, sampled every 20 ms. Limits (issue 7),
applied to the private peak: for csv, lightly_csv and parquet the large run may
take at most 50 MB more than the small one; for torch, the output itself
(N x D x 4 bytes) plus 50 MB. A last row does the same with ``data`` a
``manifest.parquet`` that lists the images, written as parquet shards.

``--runner`` goes to the CLI: ``auto`` (default) is the command's own process on a
machine of at most 4 CPUs without a GPU, where the "driver" also holds the model
and decodes; ``ray`` measures the Ray driver.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from embed_throughput import cli  # noqa: E402

from lightly_train.checkpoint import create_checkpoint  # noqa: E402

LIMIT_MB = 50.0
SIZE = 32
MODEL = "torchvision/mobilenet_v3_small"
DIM = 576  # mobilenet_v3_small's pooled features


def tiny_images(root: Path, n: int) -> Path:
    """A directory of ``n`` links to 16 distinct 8x8 PNGs (kept for a rerun)."""
    sources = root / "sources"
    if not sources.exists():
        sources.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(16):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(sources / f"{i}.png")
    directory = root / f"n{n}"
    if not directory.exists():
        directory.mkdir()
        for i in range(n):
            (directory / f"{i:07d}.png").symlink_to(sources / f"{i % 16}.png")
    return directory


def manifest(directory: Path) -> Path:
    """``manifest.parquet`` beside the images, listing them by absolute path."""
    path = directory.parent / f"{directory.name}.manifest.parquet"
    if not path.exists():
        names = sorted(p.name for p in directory.iterdir())
        pq.write_table(pa.table({"path": [str(directory / n) for n in names]}), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--work", type=Path, help="keep the images here between runs")
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=["torch", "csv", "lightly_csv", "parquet", "manifest"],
        help="only these rows (default: all)",
    )
    parser.add_argument("--runner", default="auto", choices=["auto", "ray", "local"])
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="driver-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = create_checkpoint(work / "mobilenet.ckpt", model=MODEL)
    sizes = (args.small, args.large)
    data = {n: tiny_images(work, n) for n in sizes}
    wanted = args.formats or ["torch", "csv", "lightly_csv", "parquet", "manifest"]
    cases = [(fmt, fmt, data) for fmt in wanted if fmt != "manifest"]
    if "manifest" in wanted:
        cases.append(("parquet, data=manifest", "parquet",
                      {n: manifest(d) for n, d in data.items()}))  # fmt: skip
    rows = []
    for label, fmt, inputs in cases:
        runs = [cli(inputs[n], ckpt, work / f"out-{fmt}", f"format={fmt}",
                    f"image_size={SIZE}", f"runner={args.runner}")
                for n in sizes]  # fmt: skip
        output_mb = (sizes[1] - sizes[0]) * DIM * 4 / 2**20 if fmt == "torch" else 0
        rows.append((label, runs, output_mb + LIMIT_MB))
    print(f"\ndriver peak memory, runner={args.runner}, {MODEL} @{SIZE}, 8x8 PNGs, "
          f"{sizes[0]} -> {sizes[1]} images; MB")  # fmt: skip
    print(f"{'format':24s} {'RSS small':>9s} {'large':>9s} {'growth':>7s} "
          f"{'private':>9s} {'large':>9s} {'growth':>7s} {'limit':>6s} {'ratio':>5s}"
          "  wall s")  # fmt: skip
    for label, runs, limit in rows:
        (wall0, rss0, anon0), (wall1, rss1, anon1) = runs
        print(f"{label:24s} {rss0:9.0f} {rss1:9.0f} {rss1 - rss0:+7.0f} "
              f"{anon0:9.0f} {anon1:9.0f} {anon1 - anon0:+7.0f} {limit:6.0f} "
              f"{(anon1 - anon0) / limit:5.2f}  {wall0:.0f}, {wall1:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
