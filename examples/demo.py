"""The README's main job: pretrain on the bundled sample photos, then embed them.

Runs on the cluster at RAY_ADDRESS, on a local Ray, or on a laptop (at most 4 CPUs, no
GPU) in this process (``runner="auto"``). A few SimCLR epochs at 64 px on CPU; on real
data use more epochs, larger images and GPUs.

    python examples/demo.py [out_dir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import lightly_train
from lightly_train._logging import configure_cli_logging

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import explore_embeddings  # noqa: E402  (beside this file)


def main(out_dir: Path) -> None:
    data = HERE / "sample_images"
    run = lightly_train.train(
        out=out_dir / "my_experiment",
        data=data,
        model="torchvision/resnet18",
        method="simclr",
        epochs=5,
        batch_size=8,
        transform_args={"image_size": 64},
        overwrite=True,
    )
    summary = lightly_train.embed(
        out=out_dir / "embeddings.pth",
        data=data,
        checkpoint=run.checkpoint,
        format="torch",
        image_size=64,
        overwrite=True,
    )
    embeddings = torch.load(summary.out, weights_only=True)
    print(f"\n{len(embeddings['filenames'])} embeddings of dim {summary.dim}:")
    for name, vector in zip(
        embeddings["filenames"], embeddings["embeddings"], strict=True
    ):
        print(f"  {name:24s} {[round(v, 4) for v in vector[:4].tolist()]} ...")
    print(f"Checkpoint: {run.checkpoint}")
    print(f"Embeddings are in {Path(summary.out).resolve()}")
    picture = out_dir / "explore.png"
    args = [str(summary.out), "--data", str(data), "--out", str(picture)]
    explore_embeddings.main([*args, "--queries", "3", "--pairs", "4"])
    print(f"A map, neighbours and near-duplicates: {picture.resolve()}")


if __name__ == "__main__":
    # The library only emits log records; an application chooses what to show.
    # As the CLI: lightly_train's lines, Ray's and Lightning's only in log files
    # (all of them with LIGHTLY_TRAIN_LOG_LEVEL=DEBUG).
    configure_cli_logging()
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/demo"))
