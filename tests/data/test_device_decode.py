"""The model-side JPEG decode path (``jpeg_decode="model"``), run with torchvision's
CPU decoder: the same code the GPU runs with nvJPEG, minus the device."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_train.checkpoint import load_checkpoint_entry
from lightly_train.data.decode import decode_batch, device_jpeg_area, load_image
from lightly_train.data.device_decode import _runs, decode_on_device
from lightly_train.embedding.embedder import Embedder
from tests.images import write_exif_rotated_jpeg, write_image, write_truncated_jpeg

SIZE = (48, 64)  # (height, width)
# The same code on CPU (torchvision's libjpeg decoder) and, where there is one, on
# a CUDA GPU (nvJPEG).
NO_GPU = not torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")],
    ),
]
# Largest per-pixel difference (of 255) between the two decoders, and the mean.
# PIL decodes a JPEG 2x or more larger than the target at a reduced DCT scale
# before resizing; the device decodes it whole. Measured on photos of 64x48 to
# 2000x1500: to 224x224, max 1-6 and mean 0.14-0.31 grey levels; to 64x48, max
# up to 18, mean up to 1.1.
MAX_DIFF, MEAN_DIFF = 40, 2.0
PLAIN = ("photo0", "photo1", "photo2", "photo3", "progressive", "grey")  # to the device


def photo(
    path: Path, size: tuple[int, int], seed: int, progressive: bool = False
) -> None:
    """A JPEG cut from a real photo that ships with scikit-image."""
    from skimage import data

    source = Image.fromarray(data.astronaut() if seed % 2 else data.coffee())
    rng = np.random.default_rng(seed)
    x, y = int(rng.integers(0, 100)), int(rng.integers(0, 80))
    crop = source.crop((x, y, x + 300, y + 220)).resize(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.save(path, quality=90, progressive=progressive)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("jpegs")
    out = {}
    for i, size in enumerate([(500, 375), (64, 48), (200, 120), (500, 375)]):
        out[f"photo{i}"] = root / f"photo{i}.jpg"
        photo(out[f"photo{i}"], size, seed=i)
    out["progressive"] = root / "progressive.jpg"  # common on the web
    photo(out["progressive"], (320, 240), seed=4, progressive=True)
    out["grey"] = root / "grey.jpg"
    write_image(out["grey"], mode="L", size=(80, 60))
    out["rotated"] = root / "rotated.jpg"
    write_exif_rotated_jpeg(out["rotated"], (40, 24), orientation=6)
    out["cmyk"] = root / "cmyk.jpg"
    write_image(out["cmyk"], mode="CMYK", size=(40, 30))
    out["png_named_jpg"] = root / "png.jpg"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(
        out["png_named_jpg"], "PNG"
    )
    out["truncated"] = root / "truncated.jpg"
    write_truncated_jpeg(out["truncated"])
    out["garbage"] = root / "garbage.jpg"
    out["garbage"].write_bytes(np.random.default_rng(0).bytes(500))
    return out


def test_only_plain_jpegs_go_to_the_device(files: dict[str, Path]) -> None:
    expected = set(PLAIN)
    areas = {k: device_jpeg_area(f.read_bytes()) for k, f in files.items()}
    # Rotated, CMYK, PNG, cut off, garbage: the CPU path.
    assert {k for k, area in areas.items() if area} == expected
    assert areas["photo0"] == 500 * 375 and areas["grey"] == 80 * 60
    cut = files["photo0"].read_bytes()[:-100]
    assert not device_jpeg_area(cut)  # a valid header does not make it whole


def run_both(files: dict[str, Path]) -> tuple[dict, dict]:
    names = sorted(files)
    batch = {
        "idx": np.arange(len(names)),
        "path": np.array([str(files[n]) for n in names]),
    }
    return decode_batch(batch, SIZE), decode_batch(batch, SIZE, device_jpeg=True)


@pytest.mark.parametrize("device", DEVICES)
def test_device_decode_matches_the_cpu_path(
    files: dict[str, Path], device: str
) -> None:
    names = sorted(files)
    cpu, dev = run_both(files)
    assert "image" not in dev  # no black images travel for the device's rows
    on_device = np.array([len(b) > 0 for b in dev["jpeg"]])
    decoded_here = np.array([len(b) > 0 for b in dev["pixels"]])
    assert not (on_device & decoded_here).any()
    # Every row that did not fail is in exactly one of the two columns.
    assert list(on_device | decoded_here) == [
        n in PLAIN or not cpu["error"][i] for i, n in enumerate(names)
    ]
    for i in np.flatnonzero(decoded_here):
        here = np.frombuffer(dev["pixels"][i], np.uint8).reshape(*SIZE, 3)
        np.testing.assert_array_equal(here, cpu["image"][i])
    images = torch.zeros((len(names), 3, *SIZE), dtype=torch.uint8, device=device)
    errors = dev["error"].astype(object)
    decode_on_device(dev["jpeg"], images, errors, dev["jpeg_area"])
    assert list(errors) == list(cpu["error"])  # same failures, same messages
    decoded = images.permute(0, 2, 3, 1).cpu().numpy().astype(int)
    for i, name in enumerate(names):
        if cpu["error"][i] or decoded_here[i]:
            continue
        diff = np.abs(decoded[i] - cpu["image"][i].astype(int))
        assert diff.max() <= MAX_DIFF, name
        assert diff.mean() <= MEAN_DIFF, name


@pytest.mark.parametrize("device", DEVICES)
def test_embedder_decodes_jpeg_rows_and_embeds_like_the_cpu_path(
    files: dict[str, Path], checkpoint: Path, device: str
) -> None:
    cpu, dev = run_both(files)
    entry = load_checkpoint_entry(checkpoint)
    embedder = Embedder(entry, device=device, image_size=SIZE)
    a, b = embedder(cpu), embedder(dev)
    assert list(a["error"]) == list(b["error"])
    ok = a["error"] == ""
    assert ok.sum() == len(files) - 2  # truncated and garbage fail
    x, y = a["embedding"][ok], b["embedding"][ok]
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    assert cos.min() > 0.995
    assert not b["embedding"][~ok].any()


@pytest.mark.parametrize("device", DEVICES)
def test_a_device_failure_falls_back_to_pil_per_image(
    files: dict[str, Path], device: str
) -> None:
    """One bad row in a device batch must not fail the other rows."""
    data = np.array([files["photo1"].read_bytes(), b"\xff\xd8\xff" + b"x" * 50], object)
    images = torch.zeros((2, 3, *SIZE), dtype=torch.uint8, device=device)
    errors = np.array(["", ""], dtype=object)
    decode_on_device(data, images, errors, np.array([device_jpeg_area(data[0]), 0]))
    assert errors[0] == "" and errors[1] != ""
    expected = load_image(files["photo1"].read_bytes(), SIZE)
    diff = np.abs(images[0].permute(1, 2, 0).cpu().numpy().astype(int) - expected)
    assert diff.max() <= MAX_DIFF


def test_runs_hold_at_most_max_pixels_in_row_order() -> None:
    areas = np.array([5, 5, 5, 20, 1, 0, 4])
    assert list(_runs([0, 1, 2, 3, 4, 6], areas, 10)) == [[0, 1], [2], [3], [4, 6]]
    assert list(_runs([], areas, 10)) == []


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_in_runs_of_few_pixels_decodes_the_same(
    files: dict[str, Path], device: str
) -> None:
    _, dev = run_both(files)
    decoded = []
    for max_pixels in (10**12, 500 * 375):  # all in one call; a photo or two per call
        images = torch.zeros((len(files), 3, *SIZE), dtype=torch.uint8, device=device)
        errors = dev["error"].astype(object)
        decode_on_device(dev["jpeg"], images, errors, dev["jpeg_area"], max_pixels)
        decoded.append((images.cpu(), list(errors)))
    assert torch.equal(decoded[0][0], decoded[1][0])
    assert decoded[0][1] == decoded[1][1]


MEMORY_PROBE = """
import io, sys
import numpy as np, torch
from PIL import Image
from lightly_train.data.device_decode import decode_on_device
def peak():  # VmHWM: this process's own peak RSS (ru_maxrss counts its parent's)
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) // 1024
buf = io.BytesIO()
Image.effect_noise((2000, 1500), 64).convert("RGB").save(buf, "JPEG", quality=90)
n = 16
jpeg, areas = np.array([buf.getvalue()] * n, object), np.full(n, 2000 * 1500)
images = torch.zeros((n, 3, 224, 224), dtype=torch.uint8)
errors = np.full(n, "", object)
decode_on_device(jpeg[:1], images[:1], errors[:1], areas[:1])  # warm-up
before = peak()
decode_on_device(jpeg, images, errors, areas, int(sys.argv[1]))
assert not errors.any()
print(peak() - before)
"""


def test_large_photos_decode_a_few_at_a_time() -> None:
    """16 photos of 3 MP: decoded in one call, they are held at once on CPU as
    decoded, stacked and float32 copies (measured 600-800 MB); two per call,
    50-80 MB."""

    def peak_mb(max_pixels: int) -> int:
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(max_pixels)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return int(out.stdout.strip())

    at_once, two_at_a_time = peak_mb(10**12), peak_mb(2 * 2000 * 1500)
    assert at_once > 400, at_once  # the probe can show the difference
    assert two_at_a_time < at_once / 4, (two_at_a_time, at_once)
