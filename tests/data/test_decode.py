from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightly_train.data.decode import decode_batch, load_image, to_rgb
from tests.images import (
    P_TRANSPARENT,
    QUADRANTS,
    make_image_tree,
    write_exif_rotated_jpeg,
    write_image,
    write_not_an_image,
    write_truncated_jpeg,
)

# (mode written, extension, mode PIL opens the file as) for lossless formats.
LOSSLESS = [
    ("RGB", "png", "RGB"),
    ("RGB", "bmp", "RGB"),
    ("RGB", "ppm", "RGB"),
    ("RGB", "tif", "RGB"),
    ("L", "png", "L"),
    ("L", "pgm", "L"),
    ("L", "bmp", "L"),
    ("P", "png", "P"),
    ("P", "bmp", "P"),
    (P_TRANSPARENT, "png", "P"),
    (P_TRANSPARENT, "tif", "P"),
    ("RGBA", "png", "RGBA"),
    ("RGBA", "tif", "RGBA"),
    ("LA", "png", "LA"),
    ("LA", "tif", "LA"),
    ("CMYK", "tif", "CMYK"),
    ("I;16", "png", "I;16"),
    ("I;16", "tif", "I;16"),
    ("I;16", "pgm", "I"),  # 16-bit PGM opens as 32-bit "I"
    ("I", "tif", "I"),
    ("F", "tif", "F"),
    ("1", "png", "1"),
    ("1", "bmp", "1"),
    ("1", "tif", "1"),
]

LOSSY = [
    ("RGB", "jpg"),
    ("L", "jpg"),
    ("CMYK", "jpg"),
    ("RGB", "webp"),
    ("RGBA", "webp"),
]


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize(("mode", "extension", "opened_as"), LOSSLESS)
def test_load_image__lossless_modes(
    tmp_path: Path, mode: str, extension: str, opened_as: str
) -> None:
    path = tmp_path / f"image.{extension}"
    expected = write_image(path, mode=mode, size=(30, 20), seed=1)
    with Image.open(path) as image:
        assert image.mode == opened_as  # the file really is in the mode under test
    image = load_image(path.read_bytes(), (20, 30))
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize(("mode", "extension"), LOSSY)
def test_load_image__lossy_modes(tmp_path: Path, mode: str, extension: str) -> None:
    path = tmp_path / f"image.{extension}"
    expected = write_image(path, mode=mode, size=(30, 20), seed=2)
    image = load_image(path.read_bytes(), (20, 30))
    assert image.shape == (20, 30, 3)
    assert image.dtype == np.uint8
    assert _mean_abs_diff(image, expected) < 6


def test_load_image__resizes_to_height_width(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    write_image(path, size=(80, 40))
    image = load_image(path.read_bytes(), (24, 16))
    assert image.shape == (24, 16, 3)
    upscaled = load_image(path.read_bytes(), (100, 120))
    assert upscaled.shape == (100, 120, 3)


def test_load_image__resize_is_antialiased(tmp_path: Path) -> None:
    # A one-pixel checkerboard downscaled 8x must become flat grey: a resize that
    # samples without a filter (or with a fixed-size one) keeps black and white.
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    path = tmp_path / "board.png"
    Image.fromarray(board).save(path)
    image = load_image(path.read_bytes(), (8, 8))
    assert np.abs(image.astype(int) - 127.5).max() < 16


def test_load_image__resize_is_bilinear_on_gradient(tmp_path: Path) -> None:
    # Halving a linear ramp keeps it linear: each output is the mean of its inputs.
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # (8, 64)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    image = load_image(path.read_bytes(), (4, 32))
    expected = ramp.reshape(8, 32, 2).mean(axis=-1)[:4]  # (4, 32)
    assert np.abs(image[..., 0].astype(float) - expected).max() <= 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_image__exif_orientation(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "rotated.jpg"
    expected = write_exif_rotated_jpeg(path, size=(40, 24), orientation=orientation)
    height, width = expected.shape[:2]
    image = load_image(path.read_bytes(), (height, width))
    assert image.shape == expected.shape
    assert _mean_abs_diff(image, expected) < 8


def test_load_image__exif_rotation_90_corners(tmp_path: Path) -> None:
    # Orientation 6: the stored image is shown turned 90 degrees clockwise, so the
    # stored top-left quadrant ends up top-right.
    path = tmp_path / "rotated.jpg"
    write_exif_rotated_jpeg(path, size=(40, 24), orientation=6)
    image = load_image(path.read_bytes(), (40, 24)).astype(int)
    assert np.abs(image[2, 21] - QUADRANTS["top_left"]).max() < 30
    assert np.abs(image[2, 2] - QUADRANTS["bottom_left"]).max() < 30
    assert np.abs(image[37, 21] - QUADRANTS["top_right"]).max() < 30
    assert np.abs(image[37, 2] - QUADRANTS["bottom_right"]).max() < 30


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_load_image__large_jpeg_matches_full_decode(
    tmp_path: Path, orientation: int
) -> None:
    # Draft (reduced scale) decoding must not lose detail against a full decode.
    path = tmp_path / "large.jpg"
    write_image(path, size=(640, 400), seed=3)
    with Image.open(path) as image:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as image:
        image = image.convert("RGB")
        if orientation == 6:
            image = image.transpose(Image.Transpose.ROTATE_270)
        elif orientation == 8:
            image = image.transpose(Image.Transpose.ROTATE_90)
        reference = np.asarray(image.resize((60, 90), Image.Resampling.BILINEAR))
    loaded = load_image(path.read_bytes(), (90, 60))
    assert loaded.shape == (90, 60, 3)
    assert _mean_abs_diff(loaded, reference) < 3


def test_to_rgb__16_bit_is_scaled() -> None:
    values = np.array([[0, 257, 257 * 100 + 128, 257 * 100 + 129, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    rgb = np.asarray(to_rgb(image))
    assert rgb.shape == (1, 5, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 100, 101, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_to_rgb__float_is_rounded_and_clipped() -> None:
    values = np.array([[-5.0, 0.4, 99.6, 254.9, 300.0]], np.float32)
    rgb = np.asarray(to_rgb(Image.fromarray(values)))
    np.testing.assert_array_equal(rgb[0, :, 1], [0, 0, 100, 255, 255])


def test_to_rgb__palette_transparency_without_warning() -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.info["transparency"] = bytes([0, 255] + [255] * 254)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns when P+bytes goes straight to RGB
        rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (10, 20, 30)


def test_to_rgb__rgb_unchanged() -> None:
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(image) is image


def test_load_image__truncated_jpeg_raises(tmp_path: Path) -> None:
    path = tmp_path / "truncated.jpg"
    write_truncated_jpeg(path)
    with pytest.raises(OSError, match="truncated"):
        load_image(path.read_bytes(), (16, 16))


def test_decode_batch(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    expected = write_image(good, size=(32, 24), seed=4)
    write_truncated_jpeg(tmp_path / "truncated.jpg")
    write_not_an_image(tmp_path / "text.png")
    names = ["good.png", "truncated.jpg", "text.png", "missing.png"]
    batch = {
        "idx": np.array([7, 3, 5, 0]),
        "path": np.array([str(tmp_path / n) for n in names]),
    }
    out = decode_batch(batch, (24, 32))
    assert set(out) == {"idx", "image", "error"}
    np.testing.assert_array_equal(out["idx"], [7, 3, 5, 0])
    assert out["image"].shape == (4, 24, 32, 3)
    assert out["image"].dtype == np.uint8
    np.testing.assert_array_equal(out["image"][0], expected)
    assert not out["image"][1:].any()  # failed files are black
    assert out["error"].dtype.kind == "U"
    assert out["error"][0] == ""
    assert "truncated" in out["error"][1]
    assert "not an image" in out["error"][2]
    assert "FileNotFoundError" in out["error"][3]


def test_decode_batch__empty(tmp_path: Path) -> None:
    batch = {"idx": np.array([], np.int64), "path": np.array([], str)}
    out = decode_batch(batch, (8, 6))
    assert out["image"].shape == (0, 8, 6, 3)
    assert len(out["error"]) == 0


def test_decode_batch__image_tree(tmp_path: Path) -> None:
    status = make_image_tree(tmp_path)
    names = sorted(status)
    batch = {
        "idx": np.arange(len(names)),
        "path": np.array([str(tmp_path / n) for n in names], dtype=object),
    }
    out = decode_batch(batch, (20, 24))
    assert out["image"].shape == (len(names), 20, 24, 3)
    for i, name in enumerate(names):
        if status[name] == "good":
            assert out["error"][i] == "", name
            data = (tmp_path / name).read_bytes()
            np.testing.assert_array_equal(out["image"][i], load_image(data, (20, 24)))
        else:
            assert out["error"][i] != "", name
            assert not out["image"][i].any(), name
