"""Decode image bytes to fixed-size RGB uint8 arrays.

Everything here is a plain function: Ray runs ``decode_batch`` as CPU tasks, tests and
training call ``load_image`` directly.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lightly_train.data import storage

_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode (L, P, RGBA, CMYK, 16-bit, float, ...) to RGB."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit integer or float grey: PIL's own conversion clips at 255.
        array = np.asarray(image, dtype=np.float64)
        if image.mode != "F":
            array = array / 257.0  # 16-bit range to 8-bit
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def open_image(data: bytes, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decodes image bytes to an upright RGB PIL image.

    Applies EXIF orientation and converts any mode to RGB. With ``min_size``
    (height, width), a JPEG may be decoded at a reduced scale, never below it.
    Raises on corrupt, truncated or non-image data.
    """
    with Image.open(io.BytesIO(data)) as image:
        if min_size is not None and image.format == "JPEG":
            height, width = min_size
            transposed = image.getexif().get(_ORIENTATION) in _TRANSPOSED
            image.draft("RGB", (height, width) if transposed else (width, height))
        image.load()
        # In place: otherwise Pillow copies every upright image, which in a
        # process with glibc's malloc defaults (Ray's decode tasks) took a
        # quarter of a 500x375 photo's decode at 224 px.
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)


def load_image(data: bytes, image_size: tuple[int, int]) -> np.ndarray:
    """Decodes image bytes to a ``(height, width, 3)`` uint8 array of ``image_size``.

    Applies EXIF orientation, converts to RGB and resizes (bilinear, antialiased).
    Raises on corrupt, truncated or non-image data.
    """
    height, width = image_size
    image = open_image(data, min_size=image_size)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def device_jpeg_area(data: bytes) -> int:
    """The pixels (width x height) of a JPEG for which a device JPEG decoder gives
    the same image as ``open_image``: a colour or grey JPEG without an EXIF
    rotation, that ends in its end-of-image marker; 0 for any other file (CMYK,
    rotated, non-JPEG and cut-off files are decoded on the CPU, which names a
    truncation that a hardware decoder may not). Reads only the header and the
    last bytes."""
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return 0
    try:
        with Image.open(io.BytesIO(data)) as image:
            plain = (
                image.format == "JPEG"
                and image.mode in ("RGB", "L")
                and image.getexif().get(_ORIENTATION, 1) == 1
            )
            return image.width * image.height if plain else 0
    except Exception:  # not an image: the CPU path names the error
        return 0


def read_file(path: str) -> bytes:
    """The bytes of a local file or a remote URI."""
    return storage.read_bytes(path)


def decode_batch(
    batch: dict[str, np.ndarray], image_size: tuple[int, int], device_jpeg: bool = False
) -> dict[str, np.ndarray]:
    """Reads and decodes a batch of manifest rows ``{"idx", "path"}``.

    Returns ``{"idx": (B,), "image": (B, H, W, 3) uint8, "error": (B,) str}``; a file
    that fails gets a black image and its error message, so one bad file never
    fails the job. With ``device_jpeg``, plain JPEGs are not decoded here, and no
    row carries a black image for them: ``{"idx", "jpeg", "jpeg_area", "pixels",
    "error"}``, where ``jpeg`` holds the file's bytes for the model's device to
    decode and ``jpeg_area`` its pixels at full size (the device bounds what it
    decodes at once by them), and ``pixels`` the ``(H, W, 3)`` uint8 bytes of a
    row decoded here (each empty, or 0, where unused).
    """
    height, width = image_size
    paths = batch["path"]
    errors = np.full(len(paths), "", dtype=object)
    if device_jpeg:
        jpeg = np.full(len(paths), b"", dtype=object)
        areas = np.zeros(len(paths), dtype=np.int64)
        pixels = np.full(len(paths), b"", dtype=object)
    else:
        images = np.zeros((len(paths), height, width, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            data = read_file(str(path))
            if not device_jpeg:
                images[i] = load_image(data, image_size)
            elif area := device_jpeg_area(data):
                jpeg[i], areas[i] = data, area
            else:
                pixels[i] = load_image(data, image_size).tobytes()
        except UnidentifiedImageError:
            errors[i] = "not an image file PIL can read"
        except Exception as ex:  # any decoder error: PIL raises many kinds
            errors[i] = f"{type(ex).__name__}: {ex}"
    if device_jpeg:
        return {"idx": batch["idx"], "jpeg": jpeg, "jpeg_area": areas,
                "pixels": pixels, "error": errors.astype(str)}  # fmt: skip
    return {"idx": batch["idx"], "image": images, "error": errors.astype(str)}
