"""A labelled proxy for SSL on this machine: crops of 8 real photos, class = photo.

    python benchmarks/scenes.py DIR [--per-class 120] [--size 64]

The 8 colour photos that ship with scikit-image and scikit-learn (no download) are
each cut into a 4x4 grid. Train crops come from the cells of one checkerboard
colour, val crops from the other, so no val crop overlaps a train crop: a kNN must
recognise a scene from another part of it, not find the same pixels again. Crops
are squares of 50-100% of a cell's shorter side, resized to ``--size``, flipped
at random. Two thirds of each class are train, one third val:
``DIR/train/<class>/<n>.png`` and ``DIR/val/<class>/<n>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "stereo_motorcycle",
)
GRID = 4


def photos() -> list[Image.Image]:
    """The 8 source photos: 7 of scikit-image's and scikit-learn's china.jpg."""
    from skimage import data
    from sklearn.datasets import load_sample_image

    images = []
    for name in SKIMAGE_PHOTOS:
        pixels = getattr(data, name)()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo: left
        images.append(Image.fromarray(pixels).convert("RGB"))
    images.append(Image.fromarray(load_sample_image("china.jpg")))
    return images


def crop(
    photo: Image.Image,
    cells: list[tuple[int, int]],
    rng: np.random.Generator,
    size: int,
) -> Image.Image:
    """A random square crop inside one of ``cells`` (row, column), resized."""
    row, col = cells[rng.integers(len(cells))]
    cell_w, cell_h = photo.width // GRID, photo.height // GRID
    side = int(rng.uniform(0.5, 1.0) * min(cell_w, cell_h))
    x = col * cell_w + rng.integers(0, cell_w - side + 1)
    y = row * cell_h + rng.integers(0, cell_h - side + 1)
    image = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def write_scenes(root: Path, per_class: int = 120, size: int = 64) -> int:
    """Writes the dataset; returns the number of train images."""
    rng = np.random.default_rng(0)
    cells = {
        split: [(r, c) for r in range(GRID) for c in range(GRID) if (r + c) % 2 == k]
        for k, split in enumerate(("train", "val"))
    }
    num_train = round(per_class * 2 / 3)
    for label, photo in enumerate(photos()):
        for n in range(per_class):
            split = "train" if n < num_train else "val"
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            crop(photo, cells[split], rng, size).save(folder / f"{n:04d}.png")
    return num_train * len(SKIMAGE_PHOTOS + ("china",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=120)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    write_scenes(args.out, args.per_class, args.size)


if __name__ == "__main__":
    main()
