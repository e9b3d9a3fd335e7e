"""The README's main job: embed the bundled sample photos on a local Ray.

Until ``train`` lands, the checkpoint is a randomly initialised resnet18 written in the
lightly-train checkpoint format.

    python examples/demo.py [out_dir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import lightly_train
from lightly_train.checkpoint import create_checkpoint

HERE = Path(__file__).parent


def main(out_dir: Path) -> None:
    checkpoint = create_checkpoint(
        out_dir / "checkpoints" / "last.ckpt", model="torchvision/resnet18"
    )
    summary = lightly_train.embed(
        out=out_dir / "embeddings.pth",
        data=HERE / "sample_images",
        checkpoint=checkpoint,
        format="torch",
        overwrite=True,
    )
    embeddings = torch.load(summary.out, weights_only=True)
    print(f"{len(embeddings['filenames'])} embeddings of dim {summary.dim}:")
    for name, vector in zip(
        embeddings["filenames"], embeddings["embeddings"], strict=True
    ):
        print(f"  {name:24s} {vector[:4].tolist()}")
    print(f"Embeddings are in {summary.out.resolve()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/demo"))
