"""A training step on NHWC (channels_last) against NCHW memory, on this machine's CPUs.

    python benchmarks/train_step_layout.py [--model torchvision/resnet18]
                                           [--size 224] [--batch-size 64] [--rounds 2]

The SimCLR step (forward and backward of two views, LARS update) on ready random
tensors, with every CPU as a torch thread, as the training worker runs it on a
2-CPU machine. The worker converts its method with
``.to(memory_format=torch.channels_last)`` and feeds NCHW batches; this does the
same. Each round times both layouts (alternating which goes first) over
``STEPS`` steps after a warm-up step; prints seconds per step and NCHW / NHWC:
above 1.0 is what NHWC buys.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from lightly_train._memory import keep_freed_memory
from lightly_train.methods import get_method
from lightly_train.models import build_embedding_model

STEPS = 3


def seconds_per_step(method: torch.nn.Module, views: list[torch.Tensor]) -> float:
    optimizer = method.configure_optimizers()["optimizer"]

    def step() -> None:
        optimizer.zero_grad()
        method.compute_loss(views).backward()
        optimizer.step()

    step()  # warm-up: the kernels' first-call set-up
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    return (time.perf_counter() - start) / STEPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision/resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()  # as the worker does on CPU
    torch.manual_seed(0)
    simclr = get_method("simclr")
    base = simclr(build_embedding_model(args.model), None, None,
                  global_batch_size=args.batch_size)  # fmt: skip
    shape = (args.batch_size, 3, args.size, args.size)
    views = [torch.randn(shape), torch.randn(shape)]
    layouts = {
        "NCHW": lambda: copy.deepcopy(base),
        "NHWC": lambda: copy.deepcopy(base).to(memory_format=torch.channels_last),
    }
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for r in range(args.rounds):
        order = list(layouts) if r % 2 == 0 else list(reversed(layouts))
        for name in order:
            seconds = seconds_per_step(layouts[name](), views)
            times[name].append(seconds)
            print(f"round {r + 1}: {name} {seconds:6.2f} s/step", flush=True)
    nchw, nhwc = (sum(times[n]) / len(times[n]) for n in ("NCHW", "NHWC"))
    print(f"{args.model} SimCLR step @{args.size}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads: NCHW {nchw:.2f} s, NHWC {nhwc:.2f} s, "
          f"NCHW / NHWC = {nchw / nhwc:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
