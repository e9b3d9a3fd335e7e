"""``train`` in the calling process (``runner="local"``, and ``"auto"`` on a
laptop): the run Ray Train's one worker makes, and the process left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightly_train.errors import LightlyTrainError
from lightly_train.training.config import TrainConfig
from lightly_train.training.train import train, trains_here
from tests.images import write_image

FAST = {
    "model": "torchvision/resnet18",
    "batch_size": 8,
    "transform_args": {"image_size": 32},
    "optim_args": {"lr": 0.1, "warmup_steps": 0},
    "seed": 0,
    "epochs": 2,
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("local_train")
    for i in range(24):
        write_image(root / f"{i:02d}.png", "RGB", size=(40, 40), seed=i)
    return root


def config(**args: object) -> TrainConfig:
    return TrainConfig(out="o", data="d", model="torchvision/resnet18", **args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"runner": "auto", "num_nodes": 2}, False),  # Ray Train spans nodes
        ({"runner": "auto", "max_failures": 1}, False),  # and restarts workers
        ({"runner": "ray"}, False),
        ({"runner": "local"}, True),
    ],
)
def test_only_one_node_without_restarts_trains_here(args: dict, expected: bool):
    assert trains_here(config(**args)) is expected


@pytest.mark.parametrize("args", [{"num_nodes": 2}, {"max_failures": -1}])
def test_local_with_nodes_or_restarts_names_the_fix(args: dict) -> None:
    with pytest.raises(LightlyTrainError, match="runner='ray'"):
        trains_here(config(runner="local", **args))


def test_local_training_matches_ray_trains_one_worker(
    ray_address: str, tmp_path: Path, images: Path
) -> None:
    """The same steps, losses and weights as one Ray Train worker (DDP of one
    process), the same outputs beside them; torch's threads are the caller's."""
    torch.set_num_threads(1)
    try:
        here = train(out=tmp_path / "here", data=images, runner="local", **FAST)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(2)
    on_ray = train(out=tmp_path / "ray", data=images, runner="ray", **FAST)
    for run in (here.out, on_ray.out):
        names = {p.name for p in Path(run).iterdir()}
        assert {"checkpoints", "exported_models", "metrics.jsonl", "metrics.png",
                "train.log", "config.json"} <= names  # fmt: skip
    rows = [
        [json.loads(line) for line in (Path(run) / "metrics.jsonl").open()]
        for run in (here.out, on_ray.out)
    ]
    rows = [[r for r in rs if "epoch_end" not in r] for rs in rows]  # step rows
    steps = [[r["step"] for r in rs] for rs in rows]
    assert steps[0] == steps[1] == list(range(1, 7))  # 24 images / 8, 2 epochs
    losses = [[r["loss"] for r in rs] for rs in rows]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    a = torch.load(here.checkpoint, weights_only=True)["state_dict"]
    b = torch.load(on_ray.checkpoint, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    assert "Trainable params" in (Path(here.out) / "train.log").read_text()
