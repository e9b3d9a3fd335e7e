"""``embed`` throughput, start-up and driver memory against limits measured in the same
run, and optionally against LightlyTrain 0.18.

    python benchmarks/embed_throughput.py [--peer ~/.cache/lt-peer/bin/lightly-train]
                                          [--quick] [--work DIR]

Measures, on this machine, with JPEG photos cut from scikit-image's real photos
(``benchmarks/photos.py``):
- model limit: the model alone on ready tensors, all CPUs as torch threads, batch
  64, the better of contiguous and channels_last;
- decode limit: read + decode + resize in one process (per core), times the CPUs;
- embed: the ``lightly-train embed`` CLI end to end in a fresh process (Ray start
  included) on two dataset sizes; the marginal rate ``(n2 - n1) / (t2 - t1)`` is
  the steady state, with start-up cancelled out; start-up is 16 photos end to end;
- driver peak RSS of each run (the CLI process itself, not Ray's workers);
- with ``--peer``: LightlyTrain 0.18's ``embed`` on the same 1800 and 16 photos
  with its own checkpoint of the same model (made with its ``pretrain``).

Prints a table at the end; each ratio is against a limit or the peer of this run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from photos import make_photos  # noqa: E402

from lightly_train.checkpoint import create_checkpoint  # noqa: E402
from lightly_train.data.decode import load_image, read_file  # noqa: E402

# The CLI in a fresh process that prints its own peak RSS (KiB) last on stderr.
DRIVER = (
    "import atexit, resource, sys\n"
    "atexit.register(lambda: print('maxrss', resource.getrusage("
    "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
    "from lightly_train.cli import main\n"
    "sys.argv[0] = 'lightly-train'\n"
    "main()\n"
)


def subset(photos: list[Path], n: int, root: Path) -> Path:
    """A directory of links to the first ``n`` photos."""
    directory = root / f"n{n}"
    if not directory.exists():
        directory.mkdir(parents=True)
        for p in photos[:n]:
            (directory / p.name).symlink_to(p)
    return directory


def ours(data: Path, ckpt: Path, size: int, out: Path, extra: list[str]) -> tuple:
    """Wall seconds and driver peak RSS (MB) of one ``lightly-train embed`` run."""
    args = [f"out={out}", f"data={data}", f"checkpoint={ckpt}", "format=torch",
            f"image_size={size}", "overwrite=true", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DRIVER, "embed", *args],
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"embed failed:\n{done.stderr[-3000:]}")
    rss = int(done.stderr.rsplit("maxrss", 1)[1].split()[0]) / 1024
    return wall, rss


def peer(exe: str, data: Path, ckpt: Path, out: Path) -> float:
    env = {**os.environ, "LIGHTLY_TRAIN_EVENTS_DISABLED": "1"}
    start = time.perf_counter()
    subprocess.run([exe, "embed", f"out={out}", f"data={data}", f"checkpoint={ckpt}",
                    "format=torch", "accelerator=cpu"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def peer_checkpoint(exe: str, data: Path, root: Path) -> Path:
    env = {**os.environ, "LIGHTLY_TRAIN_EVENTS_DISABLED": "1"}
    out = root / "peer_pretrain"
    subprocess.run([exe, "pretrain", f"out={out}", f"data={data}",
                    "model=torchvision/resnet18", "method=simclr", "epochs=1",
                    "batch_size=16", "accelerator=cpu"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return out / "checkpoints" / "last.ckpt"


def model_limit(model: str, size: int) -> float:
    """Images/s of the model alone, all CPUs, the better memory format."""
    from lightly_train.models import build_embedding_model

    torch.set_num_threads(os.cpu_count() or 1)
    net = build_embedding_model(model).eval()
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        net = net.to(memory_format=fmt)
        x = torch.randn(64, 3, size, size).contiguous(memory_format=fmt)
        with torch.inference_mode():
            net(x)
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < 8:
                net(x)
                n += len(x)
        best = max(best, n / (time.perf_counter() - start))
    return best


def decode_limit(photos: list[Path], size: int) -> float:
    """Images/s of read + decode + resize on one core."""
    sample = photos[:200]
    start = time.perf_counter()
    for p in sample:
        load_image(read_file(str(p)), (size, size))
    return len(sample) / (time.perf_counter() - start)


def marginal(runs: dict[int, tuple]) -> float:
    (n1, (t1, _)), (n2, (t2, _)) = sorted(runs.items())
    return (n2 - n1) / (t2 - t1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", help="a LightlyTrain 0.18 lightly-train executable")
    parser.add_argument("--quick", action="store_true", help="resnet18 only")
    parser.add_argument("--work", type=Path, help="keep photos here between runs")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    work = args.work or Path(tempfile.mkdtemp(prefix="embed-bench-"))
    photos = {}
    for name, wh, n in (
        ("500x375", (500, 375), 1800),
        ("2000x1500", (2000, 1500), 450),
    ):
        root = work / name / "all"
        have = sorted(root.glob("*.jpg")) if root.exists() else []
        photos[name] = have if len(have) >= n else make_photos(root, n, wh)
    ckpts = {m: create_checkpoint(work / f"{m.split('/')[1]}.ckpt", model=m)
             for m in ("torchvision/resnet18", "torchvision/resnet50")}  # fmt: skip
    small = create_checkpoint(work / "mobilenet.ckpt",
                              model="torchvision/mobilenet_v3_small")  # fmt: skip
    rows: list[tuple[str, float, str]] = []  # label, value, ratio

    def case(label, model, photo, sizes, ckpt, image_size, extra=()) -> dict:
        runs = {n: ours(subset(photos[photo], n, work / photo), ckpt, image_size,
                        work / "out.pth", list(extra)) for n in sizes}  # fmt: skip
        rate = marginal(runs)
        limit = model_limit(model, image_size)
        decode = decode_limit(photos[photo], image_size) * cpus
        bound = min(limit, decode)
        rows.append((f"{label}: model limit", limit, ""))
        rows.append((f"{label}: decode limit ({cpus} CPUs)", decode, ""))
        rows.append((f"{label}: embed marginal", rate,
                     f"{rate / bound:.2f} x min(model, decode)"))  # fmt: skip
        for n, (wall, rss) in sorted(runs.items()):
            rows.append((f"{label}: {n} photos wall s / driver MB", wall, f"{rss:.0f}"))
        return runs

    r18 = case("resnet18@224 500x375", "torchvision/resnet18", "500x375",
               (600, 1800), ckpts["torchvision/resnet18"], 224)  # fmt: skip
    start16 = ours(subset(photos["500x375"], 16, work / "500x375"),
                   ckpts["torchvision/resnet18"], 224, work / "o.pth", [])  # fmt: skip
    rows.append(("resnet18@224: 16 photos wall s / driver MB", start16[0],
                 f"{start16[1]:.0f}"))  # fmt: skip
    if not args.quick:
        case("resnet50@224 500x375", "torchvision/resnet50", "500x375", (150, 450),
             ckpts["torchvision/resnet50"], 224)  # fmt: skip
        case("resnet18@224 2000x1500", "torchvision/resnet18", "2000x1500",
             (150, 450), ckpts["torchvision/resnet18"], 224)  # fmt: skip
        case("mobilenet_v3_small@64 500x375", "torchvision/mobilenet_v3_small",
             "500x375", (600, 1800), small, 64)  # fmt: skip
    if args.peer:
        few = subset(photos["500x375"], 16, work / "500x375")
        ckpt = peer_checkpoint(args.peer, few, work)
        for n, (wall, _) in ((1800, r18[1800]), (16, start16)):
            theirs = peer(args.peer, subset(photos["500x375"], n, work / "500x375"),
                          ckpt, work / "peer.pth")  # fmt: skip
            rows.append((f"LightlyTrain 0.18: {n} photos wall s", theirs,
                         f"ours {theirs / wall:.2f}x faster"))  # fmt: skip

    print(f"\n{cpus} CPUs, torch {torch.__version__}; images/s unless stated")
    for label, value, note in rows:
        print(f"{label:48s} {value:9.1f}  {note}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
