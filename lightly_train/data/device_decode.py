"""Decode JPEG bytes on the model's device (nvJPEG on CUDA) and resize there.

The CPU decode tasks only read the bytes of plain JPEGs (see
``decode.device_jpeg_area``); everything else is decoded on the CPU as before. On
the device each JPEG is decoded in full, then resized with antialiased bilinear
interpolation, which is what PIL's ``BILINEAR`` resize does on the CPU path. The two
paths agree to within a few grey levels per pixel: at 224 px, at most 6 and 0.3 on
average, measured on photos of 64x48 to 2000x1500 (PIL may decode at a reduced DCT
scale first; ``tests/data/test_device_decode.py`` holds the tolerance).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from lightly_train._torchvision import torchvision  # without torch._dynamo
from lightly_train.data.decode import load_image

RGB = torchvision.io.ImageReadMode.RGB


# Pixels decoded at once, at most (a larger JPEG goes alone): the decoder holds
# every image of a call at full size, and the resize copies them twice (stacked,
# then in its working precision). 100 megapixels: 300 MB of uint8, about 0.9 GB
# at the peak on a GPU (stacked uint8 and float16 copies). 512 photos of 500x375
# (96 MP) are one call; 512 phone photos of 12 MP (6 GP: about 74 GB in one call
# before runs) go 8 at a time.
MAX_PIXELS_AT_ONCE = 100_000_000


def decode_on_device(
    jpeg: np.ndarray,
    images: torch.Tensor,
    errors: np.ndarray,
    areas: np.ndarray,
    max_pixels: int = MAX_PIXELS_AT_ONCE,
) -> None:
    """Decodes the rows of ``jpeg`` that hold bytes into ``images``, in place, in
    runs of at most ``max_pixels`` decoded pixels.

    Args:
        jpeg: ``(B,)`` bytes; empty for rows already decoded on the CPU.
        images: ``(B, 3, H, W)`` uint8 on the device; rows with bytes are filled.
        errors: ``(B,)`` str (object array); a row that no decoder can read gets
            its error here.
        areas: ``(B,)`` each JPEG's pixels at full size (``decode.device_jpeg_area``).
        max_pixels: what one decoder call may hold.
    """
    rows = [i for i, data in enumerate(jpeg) if len(data) > 0]
    for run in _runs(rows, areas, max_pixels):
        _decode_rows(run, jpeg, images, errors)


def _runs(rows: list[int], areas: np.ndarray, max_pixels: int) -> Iterator[list[int]]:
    """``rows`` in order, in runs whose ``areas`` add up to at most ``max_pixels``
    (a row larger than that alone)."""
    run: list[int] = []
    total = 0
    for i in rows:
        if run and total + int(areas[i]) > max_pixels:
            yield run
            run, total = [], 0
        run.append(i)
        total += int(areas[i])
    if run:
        yield run


def _decode_rows(
    rows: list[int], jpeg: np.ndarray, images: torch.Tensor, errors: np.ndarray
) -> None:
    """``decode_on_device`` for ``rows``, in one decoder call (if none fails)."""
    size = tuple(images.shape[2:])
    decoded = _decode(
        [torch.frombuffer(bytearray(jpeg[i]), dtype=torch.uint8) for i in rows],
        images.device,
    )
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for k, image in enumerate(decoded):
        if image is not None:
            by_shape[tuple(image.shape)].append(k)
        else:  # the device decoder refused it: the CPU path per image
            try:
                cpu = torch.from_numpy(load_image(bytes(jpeg[rows[k]]), size))
                images[rows[k]] = cpu.permute(2, 0, 1).to(images.device)
            except Exception as ex:  # any decoder error: PIL raises many kinds
                errors[rows[k]] = f"{type(ex).__name__}: {ex}"
    for ks in by_shape.values():  # one resize per input shape
        batch = torch.stack([decoded[k] for k in ks])  # (b, 3, h, w) uint8
        for k in ks:
            decoded[k] = None  # stacked: one copy of them at a time
        images[[rows[k] for k in ks]] = resize(batch, size)


# The resize's working precision per device type: on a GPU, float16 halves its
# memory traffic (it accumulates in float32, and 0-255 are exact in float16); on
# CPU, float32.
RESIZE_DTYPES = {"cuda": torch.float16}


def resize(images: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(B, 3, h, w)`` uint8 -> ``(B, 3, *size)`` uint8, antialiased bilinear."""
    if tuple(images.shape[2:]) == size:
        return images
    dtype = RESIZE_DTYPES.get(images.device.type, torch.float32)
    x = images.to(dtype)
    x = F.interpolate(x, size, mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _decode(
    data: list[torch.Tensor], device: torch.device
) -> list[torch.Tensor | None]:
    """Batched decode; on a failure, image by image so one file fails alone."""
    try:
        return list(torchvision.io.decode_jpeg(data, mode=RGB, device=device))
    except RuntimeError:
        pass
    out: list[torch.Tensor | None] = []
    for one in data:
        try:
            out.append(torchvision.io.decode_jpeg(one, mode=RGB, device=device))
        except RuntimeError:
            out.append(None)
    return out
