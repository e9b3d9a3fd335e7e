"""Which CPU model-actor layout embeds fastest on this machine (issue 7, item 1).

    .venv/bin/python benchmarks/cpu_sizing.py [--model torchvision/resnet18]
        [--layouts 1,2,4] [--counts 600,1800] [--repeat 3] [--work DIR]
        [--precision bf16-mixed]

For each layout of K actors x CPUs/K torch threads (``devices=K``: how embed sizes
a pool it is told the size of; default every K that divides the CPUs), embed's
steady rate on a local Ray: the marginal between two dataset sizes of 500x375 JPEG
photos at 224, so start-up cancels. Rounds alternate the layouts; each row is the
median of ``--repeat`` with its range, as a ratio of the best row. Also printed:
the layout ``sizing.plan_actors`` picks here (``devices="auto"``), and the same
work in this process (``runner="local"``: one model of all CPUs' threads), which
``runner="auto"`` picks on machines of at most ``LOCAL_MAX_CPUS``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from embed_throughput import median_and_range, subset  # noqa: E402 (sets OpenMP)
from photos import kept_photos  # noqa: E402

import lightly_train  # noqa: E402
from lightly_train.checkpoint import create_checkpoint  # noqa: E402
from lightly_train.runtime import machine_cpus  # noqa: E402
from lightly_train.sizing import Plan, plan_actors  # noqa: E402


def wall(data: Path, ckpt: Path, out: Path, layout: int | str, precision: str) -> float:
    """Seconds of one ``embed`` on the running Ray with ``layout`` actors, or in
    this process when ``layout`` is ``"local"``."""
    here = layout == "local"
    start = time.perf_counter()
    lightly_train.embed(out=out, data=data, checkpoint=ckpt, image_size=224,
                        overwrite=True, accelerator="cpu", precision=precision,
                        runner="local" if here else "ray",
                        devices=1 if here else layout)  # fmt: skip
    return time.perf_counter() - start


def marginal(
    sets: list[Path], ckpt: Path, out: Path, layout: int | str, precision: str
) -> float:
    """Images/s between the two larger ``sets`` (after a warm-up on the first)."""
    _, t1, t2 = [wall(d, ckpt, out, layout, precision) for d in sets]
    n1, n2 = (len(os.listdir(d)) for d in sets[1:])
    return (n2 - n1) / (t2 - t1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision/resnet18")
    parser.add_argument("--layouts", help="actor counts, e.g. 1,2,4 (default: all)")
    parser.add_argument("--counts", default="600,1800")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--work", type=Path, help="keep photos here between runs")
    args = parser.parse_args()
    cpus = machine_cpus()
    counts = [int(n) for n in args.counts.split(",")]
    layouts: list[int | str] = (
        [int(k) for k in args.layouts.split(",")]
        if args.layouts
        else [k for k in range(1, cpus + 1) if cpus % k == 0]
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="cpu-sizing-"))
    photos = kept_photos(work / "500x375" / "all", max(counts))
    sets = [subset(photos, n, work / "500x375") for n in (64, *counts)]
    name = args.model.split("/")[-1]
    ckpt = create_checkpoint(work / f"{name}.ckpt", model=args.model)
    plan = plan_actors("cpu", "auto", "auto", args.precision, {"CPU": float(cpus)},
                       [cpus])  # fmt: skip
    import ray

    rates: dict[int | str, list[float]] = {}
    for _ in range(args.repeat):
        for layout in [*layouts, "local"]:
            if layout == "local":  # no Ray's idle processes beside it
                ray.shutdown()
            elif not ray.is_initialized():  # as embed's own local Ray
                ray.init(address="local", include_dashboard=False,
                         logging_level="ERROR",
                         _system_config={"worker_niceness": 0})  # fmt: skip
            rate = marginal(sets, ckpt, work / "o.pth", layout, args.precision)
            rates.setdefault(layout, []).append(rate)
    ray.shutdown()
    print_table(rates, cpus, f"{name} @224 {args.precision}", counts, plan)


def print_table(
    rates: dict[int | str, list[float]],
    cpus: int,
    what: str,
    counts: list[int],
    plan: Plan,
) -> None:
    best = max(median_and_range(r)[0] for r in rates.values())
    print(f"\n{cpus} CPUs, {what}, marginal {counts[0]} -> {counts[1]} photos:")
    for layout, measured in rates.items():
        rate, spread = median_and_range(measured)
        label = (
            f"{layout} x {cpus // layout} on Ray"
            if layout != "local"
            else f"this process, {cpus} threads"
        )
        print(f"  {label:28s} {rate:8.1f} images/s  {rate / best:.2f} x best{spread}")
    print(f"  plan_actors picks {plan.num_actors} x {plan.threads_per_actor}")


if __name__ == "__main__":
    main()
