"""Peak memory of the model-side JPEG decode (``jpeg_decode="model"``) on large
photos: one decoder call for the whole batch against runs of at most
``MAX_PIXELS_AT_ONCE`` pixels (what ``embed`` does).

    python benchmarks/device_decode_memory.py [--size 4000x3000] [--count 24]
        [--device cpu]

Each mode runs in a fresh process; on CPU the figure is the growth of its peak
RSS (``VmHWM``), on CUDA of ``torch.cuda.max_memory_allocated``. Prints both and
their ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

PROBE = """
import io, sys, time
import numpy as np, torch
from PIL import Image
from lightly_train.data.device_decode import decode_on_device
w, h, n, device, max_pixels = sys.argv[1:6]
w, h, n = int(w), int(h), int(n)
sys.path.insert(0, "benchmarks")
from photos import sources
buf = io.BytesIO()
sources()[0].resize((w, h)).save(buf, "JPEG", quality=90)
jpeg, areas = np.array([buf.getvalue()] * n, object), np.full(n, w * h)
images = torch.zeros((n, 3, 224, 224), dtype=torch.uint8, device=device)
errors = np.full(n, "", object)
decode_on_device(jpeg[:1], images[:1], errors[:1], areas[:1])  # warm-up
cuda = device == "cuda"
def peak_rss():  # VmHWM: this process's own (ru_maxrss counts its parent's)
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) * 1024
if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.max_memory_allocated()
else:
    before = peak_rss()
start = time.perf_counter()
decode_on_device(jpeg, images, errors, areas, int(max_pixels))
if cuda:
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
after = torch.cuda.max_memory_allocated() if cuda else peak_rss()
assert not errors.any(), errors
print(f"{(after - before) / 2**20:.0f} {seconds:.2f} {len(buf.getvalue())}")
"""


def measure(size: tuple[int, int], count: int, device: str, max_pixels: int):
    """(peak MB, seconds, bytes per JPEG) of one decode of ``count`` photos."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, size), str(count), device,
         str(max_pixels)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    peak, seconds, size_bytes = out.stdout.split()
    return float(peak), float(seconds), int(size_bytes)


def main() -> None:
    from lightly_train.data.device_decode import MAX_PIXELS_AT_ONCE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000", help="WxH")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    one, one_s, nbytes = measure(size, args.count, args.device, 10**15)
    runs, runs_s, _ = measure(size, args.count, args.device, MAX_PIXELS_AT_ONCE)
    print(f"{args.count} photos of {args.size} ({nbytes / 1e6:.2f} MB each) to "
          f"224x224 on {args.device}, peak memory growth:")  # fmt: skip
    print(f"  one call for all            {one:8.0f} MB  {one_s:6.2f} s")
    print(f"  runs of {MAX_PIXELS_AT_ONCE / 1e6:.0f} MP (embed)     {runs:8.0f} MB  "
          f"{runs_s:6.2f} s  {runs / one:.2f} x one call")  # fmt: skip


if __name__ == "__main__":
    main()
