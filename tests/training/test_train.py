"""Real training runs: Ray Train workers, Lightning DDP on CPU, tiny images."""

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lightly_train
from lightly_train.checkpoint import KEY, create_checkpoint
from lightly_train.errors import LightlyTrainError
from lightly_train.methods import list_methods
from lightly_train.training.train import train
from tests.images import write_image, write_not_an_image

FAST = {
    "model": "torchvision/resnet18",
    "batch_size": 8,
    "transform_args": {"image_size": 32},
    "seed": 0,
}
# In this process: a method's loss, resuming and overwriting run the same code in a
# Ray Train worker (tests/training/test_local.py: the same steps, losses and
# weights), and Ray Train starts in 10-15 s a run. The Ray-only paths (DDP,
# restarts, a custom module's code on the workers) train on Ray below.
HERE = {**FAST, "runner": "local"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_images")
    for i in range(32):
        write_image(root / f"{i:02d}.png", "RGB", size=(40, 40), seed=i)
    write_not_an_image(root / "broken.jpg")  # skipped with a warning, never a crash
    return root


def metric_rows(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if "epoch_end" not in row]


def test_train_two_ddp_workers_then_embed(ray_address: str, tmp_path: Path, images):
    out = tmp_path / "run"
    summary = train(
        out=out, data=images, devices=2, epochs=4, embed_dim=16,
        optim_args={"lr": 0.1, "warmup_steps": 0}, **FAST,
    )  # fmt: skip
    assert summary.checkpoint == out / "checkpoints" / "last.ckpt"
    names = {p.name for p in (out / "checkpoints").iterdir()}
    assert names == {"last.ckpt", "epoch=3-step=16.ckpt"}  # 33 images / 8 -> 4 steps
    assert (out / "exported_models" / "exported_last.pt").is_file()
    with Image.open(out / "metrics.png") as plot:  # loss and lr over the 16 steps
        assert plot.format == "PNG" and plot.width > 300
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["embed_dim"] == 16
    assert config["optim_args"]["lr"] == 0.1
    assert (
        "Training torchvision/resnet18 with simclr" in (out / "train.log").read_text()
    )

    rows = metric_rows(out)
    losses = [row["loss"] for row in rows]
    assert [row["step"] for row in rows] == list(range(1, 17))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < np.mean(losses[:4])  # it learns
    assert all(row["images_per_s"] > 0 for row in rows)

    ckpt = torch.load(summary.checkpoint, weights_only=True)
    assert ckpt["global_step"] == 16 and ckpt[KEY]["embed_dim"] == 16
    assert ckpt[KEY]["image_size"] == [32, 32]

    emb = lightly_train.embed(
        out=tmp_path / "e.pth", data=images, checkpoint=summary.checkpoint,
        image_size=32,
    )  # fmt: skip
    data = torch.load(emb.out, weights_only=True)
    assert data["embeddings"].shape == (32, 16)
    assert list(emb.failed) == ["broken.jpg"]


def test_resume_continues_steps_and_weights(ray_address: str, tmp_path: Path, images):
    # A constant learning rate: the default warmup and cosine decay depend on the
    # run's length, so a 1-epoch run extended to 2 would not match a fresh 2-epoch run.
    constant = {"optim_args": {"lr": 0.1, "min_lr": 0.1, "warmup_steps": 0}}
    out = tmp_path / "run"
    train(out=out, data=images, epochs=1, **constant, **HERE)
    after_one = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert after_one["global_step"] == 4

    train(out=out, data=images, epochs=2, resume_interrupted=True, **constant, **HERE)
    after_two = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert after_two["global_step"] == 8
    assert after_two["epoch"] == 1
    assert [row["step"] for row in metric_rows(out)] == list(range(1, 9))

    # Resuming continues from the epoch-1 weights: a fresh 2-epoch run differs.
    fresh = tmp_path / "fresh"
    train(out=fresh, data=images, epochs=2, **constant, **HERE)
    fresh_ckpt = torch.load(fresh / "checkpoints" / "last.ckpt", weights_only=True)
    resumed_w = after_two[KEY]["embedding_model_state_dict"]["backbone.conv1.weight"]
    one_w = after_one[KEY]["embedding_model_state_dict"]["backbone.conv1.weight"]
    fresh_w = fresh_ckpt[KEY]["embedding_model_state_dict"]["backbone.conv1.weight"]
    assert not torch.equal(resumed_w, one_w)
    torch.testing.assert_close(resumed_w, fresh_w)  # same seed: same trajectory
    # Each run logs to its own train.log, though all ran in this one process.
    assert str(fresh) not in (out / "train.log").read_text()
    assert "Training done" in (fresh / "train.log").read_text()


@pytest.mark.parametrize("method", list_methods())
def test_each_method_trains(ray_address: str, tmp_path: Path, images, method: str):
    method_args = {}
    if method == "distillation":
        teacher = create_checkpoint(tmp_path / "teacher.ckpt", image_size=(32, 32))
        method_args = {"teacher": str(teacher)}
    if method == "dino":
        method_args = {"output_dim": 256}
    summary = train(
        out=tmp_path / "run", data=images, method=method, method_args=method_args,
        epochs=1, **HERE,
    )  # fmt: skip
    rows = metric_rows(summary.out)
    assert len(rows) == 4 and all(np.isfinite(row["loss"]) for row in rows)
    state = torch.load(summary.checkpoint, weights_only=True)
    assert state["global_step"] == 4
    # The worker trained on NHWC memory (torch.save keeps strides).
    weights = state["state_dict"].values()
    convs = [v for v in weights if v.dim() == 4 and v.shape[-1] > 1]
    assert convs and all(
        v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()
        for v in convs
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "torchvision/resnet19"}, "Did you mean 'torchvision/resnet18'"),
        ({"model": 5.0}, "expected a model name .* or a torch.nn.Module"),
        ({"method": "simclrr"}, "Did you mean 'simclr'"),
        ({"method_args": {"temprature": 0.1}}, "Did you mean 'temperature'"),
        ({"optim_args": {"lr": "fast"}}, "optim_args"),
        ({"method": "distillation"}, "needs a teacher"),
        ({"epochs": 0}, "'epochs': expected int > 0"),
        ({"batch_size": 7, "devices": 2}, "multiple of 2"),
        (
            {"batch_size": 64},
            "^"
            + re.escape(
                "batch_size=64 is larger than the 33 images in data. Use batch_size=33 "
                "or less."
            )
            + "$",
        ),
        ({"precision": "16-mixed", "accelerator": "cpu"}, "16-mixed' needs a GPU"),
        (
            {"batch_size": 1},
            "^"
            + re.escape(
                "method='simclr' needs batch_size >= 2: its loss learns from the "
                "other images of a batch, and with 1 it is constant. Use "
                "batch_size=2 or more."
            )
            + "$",
        ),
        ({"devices": 3}, "Use devices=2 or fewer"),
    ],
)
def test_bad_arguments_fail_before_training(
    ray_address: str, tmp_path: Path, images: Path, kwargs: dict, match: str
) -> None:
    args = {**FAST, "out": tmp_path / "run", "data": images, "epochs": 1}
    with pytest.raises(LightlyTrainError, match=match):
        train(**{**args, **kwargs})
    assert not (tmp_path / "run").exists()


def test_non_empty_out_is_kept(tmp_path: Path, images: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LightlyTrainError, match="not empty.*overwrite=True"):
        train(out=tmp_path, data=images, epochs=1, **FAST)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_overwrite_replaces_only_this_tools_outputs(
    ray_address: str, tmp_path: Path, images: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch=9-step=99.ckpt").write_text("a former run's")
    (tmp_path / "metrics.jsonl").write_text('{"step": 99}\n')
    train(out=tmp_path, data=images, epochs=1, overwrite=True, **HERE)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "checkpoints" / "epoch=9-step=99.ckpt").exists()
    assert [row["step"] for row in metric_rows(tmp_path)] == [1, 2, 3, 4]


def test_resume_without_checkpoint(tmp_path: Path, images: Path) -> None:
    with pytest.raises(LightlyTrainError, match="no .*last.ckpt.* to resume from"):
        train(out=tmp_path / "r", data=images, resume_interrupted=True, **FAST)


def test_empty_data(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(LightlyTrainError, match="No images found"):
        train(out=tmp_path / "r", data=tmp_path / "data", **FAST)


TINY_NET = """
import torch


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, stride=2)
        self.norm = torch.nn.BatchNorm2d(12)
        self.feature_dim = 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))  # (N, 12, h, w): mean-pooled
"""


def test_custom_module_trains_and_embeds(
    ray_address: str, tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module only this process can import (a sys.path edit): Ray's workers get
    # its code with the model (_by_value.py), on train's and embed's Ray.
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "tiny_net_here.py").write_text(TINY_NET)
    monkeypatch.syspath_prepend(tmp_path / "lib")
    TinyNet = importlib.import_module("tiny_net_here").TinyNet
    out = tmp_path / "run"
    summary = train(
        out=out, data=images, epochs=1, embed_dim=6,
        **{**FAST, "model": TinyNet()},
    )  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["model"].startswith("custom/") and config["model"].endswith("TinyNet")
    state = torch.load(summary.exported, weights_only=True)
    TinyNet().load_state_dict(state)  # strict: the trained backbone's own keys

    expected = (
        f"The checkpoint holds a custom model ({config['model'][len('custom/') :]}); "
        "its code is not in the checkpoint. Pass a fresh instance of it, e.g. "
        "load_embedding_model(checkpoint, model=MyNet()) or "
        "lightly_train.embed(..., model=MyNet())."
    )
    with pytest.raises(LightlyTrainError) as ex:
        lightly_train.load_embedding_model(summary.checkpoint)
    assert str(ex.value) == expected
    with pytest.raises(LightlyTrainError) as ex:
        lightly_train.embed(out=tmp_path / "e.pth", data=images,
                            checkpoint=summary.checkpoint)  # fmt: skip
    assert str(ex.value) == expected  # on the driver, before Ray
    model = lightly_train.load_embedding_model(summary.checkpoint, model=TinyNet())
    torch.testing.assert_close(model.backbone.conv.weight, state["conv.weight"])

    result = lightly_train.embed(
        out=tmp_path / "e.pth", data=images, checkpoint=summary.checkpoint,
        image_size=32, model=TinyNet(),
    )  # fmt: skip
    assert result.dim == 6 and result.num_images == 32


class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_resume_never_unpickles_code(ray_address: str, tmp_path: Path, images):
    out = tmp_path / "run"
    train(out=out, data=images, epochs=1, **HERE)
    last = out / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    marker = tmp_path / "marker"
    state["hostile"] = Payload(marker)
    torch.save(state, last)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        train(out=out, data=images, epochs=2, resume_interrupted=True, **HERE)
    assert not marker.exists()
