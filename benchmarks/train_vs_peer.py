"""``train`` against LightlyTrain 0.18's ``pretrain``, start-up included (issue 7).

    python benchmarks/train_vs_peer.py --peer ~/.cache/lt-peer/bin/lightly-train \\
        [--work DIR] [--rounds 2] [--images 256] [--epochs 2] [--runners auto,ray]

SimCLR, torchvision/resnet18 @224, batch 64, on the first ``--images`` of the
500x375 photos ``embed_throughput.py`` makes (the same ``--work`` shares them),
on CPU. Each round runs both CLIs in fresh processes (ours once per runner:
``auto``, in its own process on a laptop, and ``ray``, Ray Train on a local Ray),
alternating which goes first; prints each wall, where ours spent its first
seconds (when it logged "Starting Ray" and "Training ..."), and ours / peer of the
summed walls per runner: below 1.0 is faster than the peer.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from embed_throughput import peer_env, subset  # noqa: E402
from photos import kept_photos  # noqa: E402

TRAIN_ARGS = ("model=torchvision/resnet18", "method=simclr", "batch_size=64",
              "overwrite=true")  # fmt: skip


def ours(
    data: Path, out: Path, epochs: int, runner: str
) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``lightly-train train``, and when (seconds from its start)
    it logged each of a few lines."""
    exe = Path(sys.executable).parent / "lightly-train"
    marks = {"Starting Ray": r"Starting Ray", "training": r"INFO: Training "}
    seen: dict[str, float] = {}
    start = time.perf_counter()
    with subprocess.Popen([str(exe), "train", f"out={out}", f"data={data}",
                           f"epochs={epochs}", f"runner={runner}", *TRAIN_ARGS],
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          text=True) as proc:  # fmt: skip
        assert proc.stderr is not None
        tail = []
        for line in proc.stderr:
            tail = [*tail[-20:], line]
            for name, pattern in marks.items():
                if name not in seen and re.search(pattern, line):
                    seen[name] = time.perf_counter() - start
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit("lightly-train train failed:\n" + "".join(tail))
    return wall, seen


def peer(exe: str, data: Path, out: Path, epochs: int) -> float:
    start = time.perf_counter()
    done = subprocess.run([exe, "pretrain", f"out={out}", f"data={data}",
                           f"epochs={epochs}", *TRAIN_ARGS, "accelerator=cpu"],
                          env=peer_env(), capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the peer's pretrain failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peer", required=True, help="a LightlyTrain 0.18 lightly-train executable"
    )
    parser.add_argument("--work", type=Path, default=None,
                        help="keep photos here between runs")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runners", default="auto,ray",
                        help="our runners to time, comma-separated")  # fmt: skip
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="train_vs_peer_"))
    photos = kept_photos(work / "500x375" / "all", max(1800, args.images))
    data = subset(photos, args.images, work / "500x375")
    runners = args.runners.split(",")
    walls: dict[str, list[float]] = {who: [] for who in [*runners, "peer"]}
    for r in range(args.rounds):
        order = [*runners, "peer"] if r % 2 == 0 else ["peer", *runners]
        for who in order:
            if who == "peer":
                wall = peer(args.peer, data, work / "train_peer", args.epochs)
                print(f"round {r + 1}: LightlyTrain 0.18           {wall:6.1f} s")
            else:
                wall, seen = ours(data, work / "train_ours", args.epochs, who)
                marks = ", ".join(f"{k} at {v:.1f} s" for k, v in seen.items())
                print(f"round {r + 1}: lightly-train runner={who:<5} {wall:6.1f} s"
                      f"  ({marks})")  # fmt: skip
            walls[who].append(wall)
            sys.stdout.flush()
    theirs = sum(walls["peer"])
    print(f"{args.images} photos, {args.epochs} epochs, {args.rounds} rounds: peer "
          f"{theirs:.1f} s")  # fmt: skip
    for runner in runners:
        print(
            f"  runner={runner}: {sum(walls[runner]):.1f} s, ours / peer = "
            f"{sum(walls[runner]) / theirs:.2f} of its wall (goal: at most 1.00)"
        )


if __name__ == "__main__":
    main()
