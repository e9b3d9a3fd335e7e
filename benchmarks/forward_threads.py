"""A model's forward in the main thread and in another thread (where Ray runs an
actor's tasks), with glibc's default arenas and with one (``_memory.ONE_ARENA``):
images/s, kernel time and page faults, each against the main thread's.

    .venv/bin/python benchmarks/forward_threads.py [--model torchvision/resnet50]
        [--size 224] [--batch 64] [--seconds 20]

Each case runs in a fresh process with one torch thread, ``keep_freed_memory()``
and the model as embed's actors run it (BatchNorms folded, channels_last).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

from lightly_train._memory import ONE_ARENA


def measure(model: str, size: int, batch: int, seconds: float) -> dict[str, float]:
    import torch

    from lightly_train._memory import keep_freed_memory
    from lightly_train.embedding.embedder import fold_batch_norms
    from lightly_train.models import build_embedding_model

    torch.set_num_threads(1)
    keep_freed_memory()
    net = build_embedding_model(model).eval()
    net.backbone = fold_batch_norms(net.backbone)
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        net(x)
        before = resource.getrusage(resource.RUSAGE_SELF)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            net(x)
            n += batch
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {"rate": n / wall, "sys": (after.ru_stime - before.ru_stime) / wall,
            "faults": (after.ru_minflt - before.ru_minflt) / wall}  # fmt: skip


def child(args: argparse.Namespace) -> None:
    result: dict[str, float] = {}

    def work() -> None:
        result.update(measure(args.model, args.size, args.batch, args.seconds))

    if args.thread:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    else:
        work()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision/resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--thread", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    common = [sys.executable, __file__, "--child", "--model", args.model,
              "--size", str(args.size), "--batch", str(args.batch),
              "--seconds", str(args.seconds)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ONE_ARENA}
    cases = [("main thread", [], env), ("other thread", ["--thread"], env),
             ("other thread, one arena", ["--thread"], env | ONE_ARENA)]  # fmt: skip
    rows = []
    for name, extra, case_env in cases:
        out = subprocess.run(common + extra, env=case_env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        rows.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["rate"]
    print(f"{args.model} @{args.size}, batch {args.batch}, 1 torch thread")
    for name, r in rows:
        print(f"{name:26s} {r['rate']:8.1f} images/s = {r['rate'] / base:.2f} x main"
              f"  sys {r['sys']:.2f}  page faults/s {r['faults']:8.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
