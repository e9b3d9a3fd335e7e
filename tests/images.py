"""Real image files for tests: every PIL mode and format the decoder must handle.

Plain functions, no fixtures: call them with pytest's ``tmp_path``. The writers return
the RGB ``(height, width, 3)`` uint8 array the file should decode to, computed with
numpy (not PIL), so tests compare the decoder against an independent expectation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

StrPath = str | os.PathLike[str]

# A mode name that is not a PIL mode: a palette image whose index 0 is transparent.
P_TRANSPARENT = "P+transparency"
MODES = ("RGB", "L", "P", P_TRANSPARENT, "RGBA", "LA", "CMYK", "I;16", "I", "F", "1")

# The modes each format stores as they are (others PIL converts, or refuses).
_LOSSLESS_2D = ("RGB", "L", "I;16", "I", "F", "1")
FORMAT_MODES = {
    ".jpg": ("RGB", "L", "CMYK"),
    ".jpeg": ("RGB", "L", "CMYK"),
    ".webp": ("RGB", "RGBA"),
    ".png": ("RGB", "L", "P", P_TRANSPARENT, "RGBA", "LA", "I;16", "1"),
    ".bmp": ("RGB", "L", "P", "1"),
    ".tif": MODES,
    ".tiff": MODES,
    ".ppm": _LOSSLESS_2D,
    ".pgm": _LOSSLESS_2D,
}

# Entries ``make_image_tree`` writes that are not images to embed.
TREE_NUM_IGNORED = 1  # notes.txt
TREE_NUM_HIDDEN = 2  # .hidden.png and the .hidden_dir directory

# Colours of the quadrants of ``write_exif_rotated_jpeg``, in stored pixel order.
QUADRANTS = {
    "top_left": (255, 0, 0),
    "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 255, 255),
}


def _rgb(size: tuple[int, int], seed: int) -> np.ndarray:
    # Smooth content (gradients and a seeded sinusoid), so lossy formats stay close.
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(
        np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij"
    )
    freq_x, freq_y = rng.uniform(0.5, 2.0, size=2)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (freq_x * x + freq_y * y) + rng.uniform(0, 7))
    channels = [x, y, wave]
    order = rng.permutation(3)
    array = np.stack([channels[i] for i in order], axis=-1) * 255  # (H, W, 3)
    return np.rint(array).astype(np.uint8)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.mean(axis=-1).round().astype(np.uint8)  # (H, W)


def _as_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _palette_image(rgb: np.ndarray, seed: int) -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    palette = rng.integers(0, 256, size=(16, 3), dtype=np.uint8)
    index = (_grey(rgb) // 16).astype(np.uint8)  # (H, W) in 0..15
    height, width = index.shape
    image = Image.frombytes("P", (width, height), index.tobytes())
    image.putpalette(palette.flatten().tolist())
    return image, palette[index]


def _image(mode: str, rgb: np.ndarray, seed: int) -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(seed + 2)
    alpha = rng.integers(0, 256, size=rgb.shape[:2], dtype=np.uint8)
    grey = _grey(rgb)
    if mode == "RGB":
        return Image.fromarray(rgb), rgb
    if mode == "L":
        return Image.fromarray(grey), _as_rgb(grey)
    if mode in ("P", P_TRANSPARENT):
        return _palette_image(rgb, seed)
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, alpha])), rgb
    if mode == "LA":
        return Image.fromarray(np.dstack([grey, alpha])).convert("LA"), _as_rgb(grey)
    if mode == "CMYK":
        # PIL's RGB -> CMYK is C = 255 - R (K = 0), which converts back exactly.
        return Image.fromarray(rgb).convert("CMYK"), rgb
    if mode in ("I;16", "I"):
        # 16-bit values whose value / 257 rounds to ``grey``: checks the scaling.
        offset = rng.integers(0, 129, size=grey.shape)
        wide = grey.astype(np.int64) * 257 + np.where(grey == 255, 0, offset)
        dtype = np.uint16 if mode == "I;16" else np.int32
        return Image.fromarray(wide.astype(dtype)), _as_rgb(grey)
    if mode == "F":
        # 8-bit range floats, off the integers by less than half.
        floats = grey.astype(np.float32) + rng.uniform(-0.4, 0.4, grey.shape)
        return Image.fromarray(floats.astype(np.float32)), _as_rgb(grey)
    if mode == "1":
        bits = grey > 127
        return Image.fromarray(bits), _as_rgb(bits.astype(np.uint8) * 255)
    raise ValueError(f"Unknown mode '{mode}', valid modes are: {', '.join(MODES)}.")


def write_image(
    path: StrPath, mode: str = "RGB", size: tuple[int, int] = (32, 24), seed: int = 0
) -> np.ndarray:
    """Writes an image of PIL ``mode`` and ``size`` (width, height) to ``path``.

    The format follows the extension (any letter case), and ``mode`` must be one the
    format stores as is (``FORMAT_MODES``); ``P_TRANSPARENT`` writes a palette image
    with a transparent index. ``seed`` varies the content. Missing parent directories
    are created.

    Returns:
        The ``(height, width, 3)`` uint8 RGB array the file should decode to: exact
        for lossless formats, approximate for JPEG and WebP.

    Example:
        >>> expected = write_image(tmp_path / "a.png", mode="I;16", size=(40, 20))
    """
    path = Path(path)
    valid = FORMAT_MODES.get(path.suffix.lower(), ())
    if mode not in valid:
        raise ValueError(
            f"Cannot write mode '{mode}' as '{path.suffix}': valid modes for it are "
            f"{valid}, valid extensions are {', '.join(FORMAT_MODES)}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image, expected = _image(mode, _rgb(size, seed), seed)
    options = {"transparency": 0} if mode == P_TRANSPARENT else {}
    if path.suffix.lower() in (".jpg", ".jpeg", ".webp"):
        options["quality"] = 95
    image.save(path, **options)
    return expected


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    # The EXIF 2.3 meaning of each Orientation value, as the transform that displays
    # the stored pixels upright.
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored horizontally
        3: lambda a: a[::-1, ::-1],  # rotated 180
        4: lambda a: a[::-1, :],  # mirrored vertically
        5: lambda a: a.transpose(1, 0, 2),  # transposed (main diagonal)
        6: lambda a: np.rot90(a, k=-1),  # rotated 90 clockwise to display
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # anti-diagonal
        8: lambda a: np.rot90(a, k=1),  # rotated 90 counter-clockwise to display
    }
    return np.ascontiguousarray(transforms[orientation](array))


def write_exif_rotated_jpeg(
    path: StrPath, size: tuple[int, int] = (40, 24), orientation: int = 6
) -> np.ndarray:
    """Writes a JPEG of ``size`` (width, height) stored pixels with an EXIF orientation.

    The stored pixels are four solid quadrants coloured as in ``QUADRANTS``.

    Returns:
        The ``(height, width, 3)`` array as it should be displayed, i.e. after the
        orientation; its shape is transposed for orientations 5 to 8.
    """
    width, height = size
    stored = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = slice(0, height // 2), slice(0, width // 2)
    bottom, right = slice(height // 2, height), slice(width // 2, width)
    stored[top, left] = QUADRANTS["top_left"]
    stored[top, right] = QUADRANTS["top_right"]
    stored[bottom, left] = QUADRANTS["bottom_left"]
    stored[bottom, right] = QUADRANTS["bottom_right"]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, quality=95, subsampling=0, exif=exif.tobytes())
    return _orient(stored, orientation)


def write_truncated_jpeg(path: StrPath, size: tuple[int, int] = (64, 48)) -> None:
    """Writes a noisy JPEG cut off halfway through its image data."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_not_an_image(path: StrPath) -> None:
    """Writes a text file, whatever the extension of ``path`` says."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("This is not an image, whatever its name says.\n")


# (relative filename, mode, (width, height)) of the good images of ``make_image_tree``.
_TREE_IMAGES = [
    ("a.jpg", "RGB", (64, 48)),
    ("b.JPEG", "L", (40, 40)),
    ("c.png", "RGBA", (16, 16)),
    ("d.png", "P", (33, 17)),
    ("e.png", P_TRANSPARENT, (24, 36)),
    ("f.png", "LA", (20, 30)),
    ("g.png", "I;16", (48, 32)),
    ("h.png", "1", (31, 29)),
    ("i.bmp", "RGB", (80, 16)),
    ("j.tif", "CMYK", (30, 40)),
    ("k.webp", "RGB", (50, 40)),
    ("l.ppm", "RGB", (17, 23)),
    ("m.pgm", "L", (23, 17)),
    ('we,ird "ñame".png', "RGB", (32, 32)),
    ("sub/n.jpg", "CMYK", (40, 56)),
    ("sub/o.Jpeg", "RGB", (16, 80)),
    ("sub/deeper/p.tiff", "I;16", (28, 28)),
    ("sub/deeper/q.PNG", "P", (45, 19)),
    ("sub/deeper/r.webp", "RGBA", (36, 24)),
]


def make_image_tree(root: StrPath) -> dict[str, str]:
    """Writes a nested folder of about 20 images to ``root`` for end-to-end tests.

    Mixed sizes (16 to 80 px), modes (RGB, L, P, P with transparency, RGBA, LA, CMYK,
    16-bit, 1-bit) and formats (jpg, JPEG, png, bmp, tif, webp, ppm, pgm), a name with
    a comma, a quote and non-ASCII, an EXIF-rotated JPEG, a truncated JPEG and a text
    file named ``.png``. Also writes entries that are not listed: ``notes.txt``
    (``TREE_NUM_IGNORED``), ``.hidden.png`` and ``.hidden_dir/`` (``TREE_NUM_HIDDEN``).

    Returns:
        ``{filename: "good" | "corrupt"}`` for every file with an image extension that
        is not hidden, ``filename`` relative to ``root`` with ``/`` separators.

    Example:
        >>> status = make_image_tree(tmp_path)
        >>> status["sub/corrupt/truncated.jpg"]
        'corrupt'
    """
    root = Path(root)
    status = {}
    for seed, (name, mode, size) in enumerate(_TREE_IMAGES):
        write_image(root / name, mode=mode, size=size, seed=seed)
        status[name] = "good"
    write_exif_rotated_jpeg(root / "sub/exif_rotated.jpg", (40, 24), orientation=6)
    status["sub/exif_rotated.jpg"] = "good"
    write_truncated_jpeg(root / "sub/corrupt/truncated.jpg")
    write_not_an_image(root / "sub/corrupt/not_an_image.png")
    status["sub/corrupt/truncated.jpg"] = "corrupt"
    status["sub/corrupt/not_an_image.png"] = "corrupt"
    (root / "notes.txt").write_text("Not an image.\n")
    write_image(root / ".hidden.png", size=(16, 16))
    write_image(root / ".hidden_dir/inside.jpg", size=(16, 16))
    return status
