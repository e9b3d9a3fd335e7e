"""Benchmark photos: JPEGs cut from the real photos that ship with scikit-image.

    python benchmarks/photos.py DIR --num-images 1800 [--size 500x375]

Every file is a different random crop of one of scikit-image's colour photos, resized
to ``--size`` (width x height) and saved at quality 90, so decode work is that of a
real photo of that size (no download needed).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


SAMPLES = Path(__file__).parents[1] / "examples" / "sample_images"


def sources() -> list[Image.Image]:
    """scikit-image's photos; without it (e.g. on a bare GPU machine) the bundled
    sample photos, which are smaller."""
    try:
        from skimage import data
    except ImportError:
        return [Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.jpg"))]
    return [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]


def make_photos(
    root: Path, n: int, size: tuple[int, int] = (500, 375), processes: int = 1
) -> list[Path]:
    """Writes ``n`` JPEGs of ``size`` (width, height) named ``000000.jpg``, ...;
    with ``processes`` > 1, in parallel (other crops, the same kind of photos)."""
    root.mkdir(parents=True, exist_ok=True)
    if processes <= 1:
        return _make(root, 0, n, size)
    step = -(-n // processes)
    firsts = list(range(0, n, step))
    counts = [min(step, n - f) for f in firsts]
    with ProcessPoolExecutor(processes) as pool:
        parts = pool.map(_make, [root] * len(firsts), firsts, counts,
                         [size] * len(firsts))  # fmt: skip
        return [path for part in parts for path in part]


def kept_photos(root: Path, n: int, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """The photos an earlier run left in ``root`` (``--work``), if at least ``n``;
    else ``make_photos(root, n, size)``."""
    have = sorted(root.glob("*.jpg")) if root.exists() else []
    return have if len(have) >= n else make_photos(root, n, size)


def _make(root: Path, first: int, n: int, size: tuple[int, int]) -> list[Path]:
    rng = np.random.default_rng(first)
    photos = sources()
    width, height = size
    paths = []
    for i in range(first, first + n):
        photo = photos[i % len(photos)]
        scale = rng.uniform(0.6, 1.0)
        w, h = int(photo.width * scale), int(photo.height * scale)
        x = rng.integers(0, photo.width - w + 1)
        y = rng.integers(0, photo.height - h + 1)
        crop = photo.crop((x, y, x + w, y + h)).resize((width, height))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = root / f"{i:06d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--num-images", type=int, default=1800)
    parser.add_argument("--size", default="500x375", help="width x height")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    make_photos(args.out, args.num_images, (width, height))


if __name__ == "__main__":
    main()
