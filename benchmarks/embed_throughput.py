"""``embed`` throughput, start-up and driver memory against limits measured in the same
run, and optionally against LightlyTrain 0.18.

    python benchmarks/embed_throughput.py [--peer ~/.cache/lt-peer/bin/lightly-train]
                                          [--quick] [--only TEXT] [--work DIR]
                                          [--repeat N]

Measures, on this machine, with JPEG photos cut from scikit-image's real photos
(``benchmarks/photos.py``):
- model limit: the model alone on ready tensors, all CPUs as torch threads, batch
  64, the best of contiguous, channels_last and channels_last with BatchNorms
  folded, glibc keeping freed memory (what the actors run);
- decode limit: read + decode + resize in one process per CPU, all at once (and
  in one process alone: a core's rate);
- embed marginal: ``lightly_train.embed`` on one warm Ray at two dataset sizes;
  ``(n2 - n1) / (t2 - t1)`` is the steady state, start-up cancelled out; the same
  with ``runner="local"`` (the stages in this process);
- end to end: the ``lightly-train embed`` CLI in a fresh process on 16 and 1800
  photos, with ``runner=auto`` (on a laptop: in its own process) and
  ``runner=ray`` (Ray start, imports, actors), and the driver's peak RSS;
- with ``--peer``: LightlyTrain 0.18's ``embed`` on the same 1800 and 16 photos
  with its own checkpoint of the same model (made with its ``pretrain``).
- resnet18 also with ``precision="bf16-mixed"`` (bf16 autocast, on CPU too): its
  model limit in bf16, its marginals, and the CLI on 1800 photos against the
  peer's float32 run (a CPU with bf16 in hardware runs it about twice as fast).

Prints a table at the end; each ratio is against a limit or the peer of this run.
``--repeat N`` measures each marginal N times, alternating the two runners, and
prints the median with the range: on a shared 2-CPU machine one marginal moves
by 5-10% from run to run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightly_train._openmp import wait_passively

wait_passively()  # as the CLI: this process embeds with runner="local" too

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from photos import kept_photos  # noqa: E402

from lightly_train.checkpoint import (  # noqa: E402
    checkpoint_entry,
    create_checkpoint,
    save_checkpoint,
)
from lightly_train.data.decode import load_image, read_file  # noqa: E402
from lightly_train.models.embedding_model import (  # noqa: E402
    EmbeddingModel,
    model_name,
)

# The CLI in a fresh process that prints its own peak RSS (KiB) last on stderr:
# VmHWM (not ru_maxrss: a child started by vfork + exec inherits the parent's
# peak in ru_maxrss, this script's with models loaded: 1.4-3 GB read here), and
# the peak of RssAnon sampled every 20 ms. VmHWM also counts the pages of Ray's
# shared-memory object store that the driver has mapped (every block it reads
# comes through there); RssAnon is the driver's own memory.
DRIVER = """
import atexit, re, sys, threading, time
peak = [0]
def field(name):
    return int(re.search(name + r":\\s*(\\d+)", open("/proc/self/status").read())[1])
def sample():
    while True:
        peak[0] = max(peak[0], field("RssAnon"))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
atexit.register(lambda: print("maxrss", field("VmHWM"), max(peak[0], field("RssAnon")),
                              file=sys.stderr))
from lightly_train.cli import main
sys.argv[0] = "lightly-train"
main()
"""


def subset(photos: list[Path], n: int, root: Path) -> Path:
    """A directory of ``n`` links to the photos (cycling when ``n`` is larger)."""
    directory = root / f"n{n}"
    if not directory.exists():
        directory.mkdir(parents=True)
        for i in range(n):
            (directory / f"{i:07d}.jpg").symlink_to(photos[i % len(photos)])
    return directory


def cli(data: Path, ckpt: Path, out: Path, *extra: str) -> tuple[float, float, float]:
    """Wall seconds, driver peak RSS and peak private RSS (MB, see ``DRIVER``) of
    one ``lightly-train embed`` run in a fresh process: Ray start, imports and actor
    start included. ``extra``: more ``key=value`` arguments (the format is torch
    unless one names another)."""
    fmt = [] if any(a.startswith("format=") for a in extra) else ["format=torch"]
    args = [f"out={out}", f"data={data}", f"checkpoint={ckpt}", "overwrite=true",
            *fmt, *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DRIVER, "embed", *args],
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"embed failed:\n{done.stderr[-3000:]}")
    rss, anon = done.stderr.rsplit("maxrss", 1)[1].split()[:2]
    return wall, int(rss) / 1024, int(anon) / 1024


def api(
    data: Path,
    ckpt: Path,
    size: int,
    out: Path,
    model: nn.Module | None = None,
    runner: str = "auto",
    precision: str = "32-true",
) -> float:
    """Wall seconds of ``lightly_train.embed`` on the running Ray (its actor pool
    starts anew each call, so start-up is in every run and cancels in a marginal
    rate), or in this process with ``runner="local"``. ``model``: the module of a
    custom checkpoint."""
    import lightly_train

    start = time.perf_counter()
    lightly_train.embed(out=out, data=data, checkpoint=ckpt, image_size=size,
                        overwrite=True, model=model, runner=runner,
                        precision=precision)  # fmt: skip
    return time.perf_counter() - start


@dataclass(frozen=True)
class Case:
    """One steady-state row: ``model`` on ``photo`` photos resized to ``size``,
    marginal between ``counts`` photos, in ``precision``."""

    label: str
    model: str  # a model name, or "mean colour"
    photo: str  # "500x375" or "2000x1500"
    size: int
    counts: tuple[int, int]
    precision: str = "32-true"


def marginal(
    case: Case, photos: list[Path], ckpt: Path, work: Path, runner: str = "auto"
) -> float:
    """``(n2 - n1) / (t2 - t1)`` of ``api`` on ``case.counts`` photos after a
    warm-up run of 64: the steady rate, start-up cancelled."""
    net = MeanColour() if case.model == "mean colour" else None
    root = photos[0].parent.parent
    _, t1, t2 = [api(subset(photos, n, root), ckpt, case.size, work / "o.pth", net,
                     runner, case.precision)
                 for n in (64, *case.counts)]  # fmt: skip
    return (case.counts[1] - case.counts[0]) / (t2 - t1)


def marginals(
    cases: list[Case],
    photos: dict[str, list[Path]],
    ckpts: dict[str, Path],
    work: Path,
    repeat: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each case's marginal rates with ``runner="local"`` and on Ray, ``repeat``
    rounds of both. The local ones run while no Ray runs beside them: a local
    Ray's idle processes take their share of 2 CPUs."""
    import ray

    rates: dict[str, dict[str, list[float]]] = {"local": {}, "ray": {}}

    def measure(runner: str) -> None:
        for case in cases:
            rate = marginal(case, photos[case.photo], ckpts[case.model], work, runner)
            rates[runner].setdefault(case.label, []).append(rate)

    for _ in range(repeat):
        measure("local")
        ray.init(
            address="local",
            include_dashboard=False,
            logging_level="ERROR",
            _system_config={"worker_niceness": 0},
        )  # as embed's own local Ray
        measure("ray")
        ray.shutdown()
    return rates["local"], rates["ray"]


def median_and_range(rates: list[float]) -> tuple[float, str]:
    """The median of repeated measurements, and their range when there are
    several (``"; median of 3: 50.1-54.2"``)."""
    if len(rates) == 1:
        return rates[0], ""
    return statistics.median(rates), (
        f"; median of {len(rates)}: {min(rates):.1f}-{max(rates):.1f}"
    )


class MeanColour(nn.Module):
    """A model that costs next to nothing (an image's mean colour, projected): with
    it, decoding is all the work and embed's rate is held to the decode limit."""

    feature_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, self.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(2, 3)))


def custom_checkpoint(net: nn.Module, size: int, path: Path) -> Path:
    entry = checkpoint_entry(EmbeddingModel(net), model_name(net),
                             image_size=(size, size))  # fmt: skip
    return save_checkpoint(path, entry)


def peer_env() -> dict[str, str]:
    """The peer's own environment: its package is also named ``lightly_train``, so
    a PYTHONPATH pointing at this checkout must not reach it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "LIGHTLY_TRAIN_EVENTS_DISABLED": "1"}


def peer(exe: str, data: Path, ckpt: Path, out: Path) -> float:
    env = peer_env()
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([exe, "embed", f"out={out}", f"data={data}", f"checkpoint={ckpt}",
                    "format=torch", "accelerator=cpu"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def peer_checkpoint(exe: str, data: Path, root: Path) -> Path:
    env = peer_env()
    out = root / "peer_pretrain"
    subprocess.run([exe, "pretrain", f"out={out}", f"data={data}",
                    "model=torchvision/resnet18", "method=simclr", "epochs=1",
                    "batch_size=16", "accelerator=cpu", "overwrite=true"],
                   env=env, check=True, capture_output=True)  # fmt: skip
    return out / "checkpoints" / "last.ckpt"


def model_limit(model: str | nn.Module, size: int, precision: str = "32-true") -> float:
    """Images/s of the model alone, all CPUs: the best of contiguous, channels_last
    and channels_last with BatchNorms folded into the convolutions (what embed's
    actors run), each with OpenMP's threads sleeping when they wait (this process,
    as the CLI's) and spinning a while first (GNU OpenMP's default, in a child
    process: its model runs faster alone), so that embed is held to the fastest
    its model can run here."""
    import multiprocessing

    os.environ["GOMP_SPINCOUNT"] = "300000"  # libgomp's own default; it wins
    try:  # over OMP_WAIT_POLICY, which the child inherits
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            spinning = pool.apply(_model_rate, (model, size, precision))
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return max(spinning, _model_rate(model, size, precision))


def _model_rate(model: str | nn.Module, size: int, precision: str) -> float:
    """``model_limit`` in this process's OpenMP wait policy."""
    from lightly_train._memory import keep_freed_memory
    from lightly_train.embedding.embedder import fold_batch_norms
    from lightly_train.models import build_embedding_model

    torch.set_num_threads(os.cpu_count() or 1)
    keep_freed_memory()  # as in embed's CPU actors
    net = build_embedding_model(model).eval()
    folded = build_embedding_model(model).eval()  # a custom module: the same one
    folded.backbone = fold_batch_norms(folded.backbone)
    best = 0.0
    for fmt, candidate in ((torch.contiguous_format, net),
                           (torch.channels_last, net),
                           (torch.channels_last, folded)):  # fmt: skip
        candidate = candidate.to(memory_format=fmt)
        x = torch.randn(64, 3, size, size).contiguous(memory_format=fmt)
        bf16 = precision == "bf16-mixed"  # embed's autocast, as in the Embedder
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, bf16):
            candidate(x)
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < 8:
                candidate(x)
                n += len(x)
        best = max(best, n / (time.perf_counter() - start))
    return best


DECODE_SECONDS = 5.0  # each decode limit's timed window


def decode_limit(photos: list[Path], size: int, processes: int) -> float:
    """Images/s of read + decode + resize in ``processes`` processes decoding at
    once, one per CPU (1: a core's rate). Measured, not one core's rate times the
    CPUs, which need not scale (shared caches, hyperthreads, neighbours on the
    host): the table shows the factor."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")  # no copy of torch's threads
    start, results = spawn.Barrier(processes + 1), spawn.Queue()
    names = [str(p) for p in photos[:200]]
    workers = [spawn.Process(target=_decode_for, args=(names, size, start, results))
               for _ in range(processes)]  # fmt: skip
    for worker in workers:
        worker.start()
    start.wait()  # every process has imported and decoded its first photo
    rates = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def _decode_for(names: list[str], size: int, start: Any, results: Any) -> None:
    """Decodes ``names`` over and over for ``DECODE_SECONDS`` after ``start``;
    puts its images/s."""
    load_image(read_file(names[0]), (size, size))
    start.wait()
    begin, done = time.perf_counter(), 0
    while time.perf_counter() - begin < DECODE_SECONDS:
        load_image(read_file(names[done % len(names)]), (size, size))
        done += 1
    results.put(done / (time.perf_counter() - begin))


class Rows(list):
    """The table's rows; each is also printed when measured, so a failure later
    in the run loses nothing."""

    def append(self, row: tuple[str, float, str]) -> None:
        super().append(row)
        print(f"{row[0]:48s} {row[1]:9.1f}  {row[2]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", help="a LightlyTrain 0.18 lightly-train executable")
    parser.add_argument("--quick", action="store_true", help="resnet18 only")
    parser.add_argument(
        "--only", help="only the steady-state rows whose label holds this text"
    )
    parser.add_argument("--work", type=Path, help="keep photos here between runs")
    parser.add_argument(
        "--repeat", type=int, default=1, help="each marginal this many times (median)"
    )
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    work = args.work or Path(tempfile.mkdtemp(prefix="embed-bench-"))
    photos = {}
    for name, wh, n in (
        ("500x375", (500, 375), 1800),
        ("2000x1500", (2000, 1500), 450),
    ):
        photos[name] = kept_photos(work / name / "all", n, wh)
    models = ("torchvision/resnet18", "torchvision/resnet50",
              "torchvision/mobilenet_v3_small")  # fmt: skip
    ckpts = {m: create_checkpoint(work / f"{m.split('/')[1]}.ckpt", model=m)
             for m in models}  # fmt: skip
    rows = Rows()

    # Steady state: two sizes on one warm Ray, the marginal rate between them.
    r18, r50 = "torchvision/resnet18", "torchvision/resnet50"
    cases = [
        Case("resnet18@224 500x375", r18, "500x375", 224, (600, 1800)),
        # bf16 autocast on CPU: twice float32's rate where the CPU has bf16 in
        # hardware (AVX-512 BF16, AMX), so decoding weighs twice as much.
        Case("resnet18@224 500x375 bf16", r18, "500x375", 224, (600, 1800),
             "bf16-mixed"),
    ]  # fmt: skip
    if not args.quick:
        cases += [
            # 150 -> 450 read 0.68 of the limit where 600 -> 1800 read 0.94: each
            # actor's first batches and the padding of 450 images to 512 weighed.
            Case("resnet50@224 500x375", r50, "500x375", 224, (600, 1800)),
            Case("resnet18@224 2000x1500", r18, "2000x1500", 224, (300, 900)),
            # Not bound by decoding alone: the model costs about what a decode
            # does (0.32 against 0.69 ms per image-core).
            Case("mobilenet_v3_small@64 500x375", "torchvision/mobilenet_v3_small",
                 "500x375", 64, (1800, 9000)),
            # Decode-bound: a model that costs next to nothing.
            Case("mean colour@64 500x375", "mean colour", "500x375", 64,
                 (9000, 36000)),
        ]  # fmt: skip
    ckpts["mean colour"] = custom_checkpoint(MeanColour(), 64, work / "mean.ckpt")
    if args.only:
        cases = [case for case in cases if args.only in case.label]
    # Limits first, while nothing else runs on the machine.
    limits = {}
    for case in cases:
        per_core = decode_limit(photos[case.photo], case.size, 1)
        decode = decode_limit(photos[case.photo], case.size, cpus)
        net = MeanColour() if case.model == "mean colour" else case.model
        model = model_limit(net, case.size, case.precision)
        limits[case.label] = (model, decode, per_core)
    local_rates, ray_rates = marginals(cases, photos, ckpts, work, args.repeat)
    for case in cases:
        label, (n1, n2) = case.label, case.counts
        limit, decode, per_core = limits[label]
        rows.append((f"{label}: model limit", limit, ""))
        rows.append((f"{label}: decode limit ({cpus} CPUs)", decode,
                     f"{per_core:.0f} on one core alone "
                     f"({decode / per_core:.2f}x it on {cpus})"))  # fmt: skip
        bound = min(limit, decode)
        for name, rates in ((f"embed marginal {n1}->{n2}", ray_rates[label]),
                            ("runner=local marginal", local_rates[label])):  # fmt: skip
            rate, spread = median_and_range(rates)
            note = f"{rate / bound:.2f} x min(model, decode){spread}"
            rows.append((f"{label}: {name}", rate, note))
    if args.only:
        return print_table(rows, cpus)

    # End to end, as a user runs it: fresh processes, Ray start included.
    # runner=auto is the command's own process on a machine of at most 4 CPUs
    # without a GPU; runner=ray the Ray pipeline on a local Ray.
    walls = {}
    runs = [(runner, n, ()) for runner in ("auto", "ray") for n in (16, 1800)]
    runs.append(("auto bf16", 1800, ("precision=bf16-mixed",)))
    for runner, n, extra in runs:
        walls[runner, n] = cli(subset(photos["500x375"], n, work / "500x375"),
                               ckpts[r18], work / "c.pth",
                               f"runner={runner.split()[0]}", *extra)  # fmt: skip
        rows.append((f"lightly-train embed runner={runner}: {n} photos, wall s",
                     walls[runner, n][0],
                     f"driver peak RSS {walls[runner, n][1]:.0f} MB"))  # fmt: skip
    if args.peer:
        few = subset(photos["500x375"], 16, work / "500x375")
        ckpt = peer_checkpoint(args.peer, few, work)
        for n in (16, 1800):
            theirs = peer(args.peer, subset(photos["500x375"], n, work / "500x375"),
                          ckpt, work / "peer.pth")  # fmt: skip
            ratios = [f"{runner} {theirs / walls[runner, n][0]:.2f}x"
                      for runner in ("auto", "ray", "auto bf16")
                      if (runner, n) in walls]  # fmt: skip
            rows.append((f"LightlyTrain 0.18 embed: {n} photos, wall s", theirs,
                         f"ours faster: {', '.join(ratios)}"))  # fmt: skip
    print_table(rows, cpus)


def print_table(rows: list[tuple[str, float, str]], cpus: int) -> None:
    print(f"\n{cpus} CPUs, torch {torch.__version__}; images/s unless stated")
    for label, value, note in rows:
        print(f"{label:48s} {value:9.1f}  {note}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
