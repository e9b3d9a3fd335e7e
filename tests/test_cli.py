"""The real ``lightly-train`` executable, run as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightly_train.models import build_full_model
from tests.images import write_image

EXE = str(Path(sys.executable).with_name("lightly-train"))


def run_cli(*args: str, ray_address: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if ray_address:
        env["RAY_ADDRESS"] = ray_address  # join the session's Ray, as `ray job` does
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_embed_runs_end_to_end(ray_address: str, tmp_path: Path, checkpoint) -> None:
    for i in range(3):
        write_image(tmp_path / "imgs" / f"{i}.png", "RGB", size=(30, 20), seed=i)
    out = tmp_path / "emb.csv"
    result = run_cli(
        "embed", f"out={out}", f"data={tmp_path / 'imgs'}", f"checkpoint={checkpoint}",
        "format=csv", "image_size=[16,24]", "batch_size=2", ray_address=ray_address,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Embeddings written to '{out}'" in result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("filename,embedding_0,") and len(lines) == 4
    assert [line.split(",")[0] for line in lines[1:]] == ["0.png", "1.png", "2.png"]


def test_embed_torch_format_via_cli(ray_address: str, tmp_path: Path, checkpoint):
    write_image(tmp_path / "imgs" / "a.jpg", "RGB", size=(20, 20), seed=0)
    out = tmp_path / "sub" / "emb.pth"
    result = run_cli(
        "embed", f"out={out}", f"data={tmp_path / 'imgs'}", f"checkpoint={checkpoint}",
        "image_size=16", ray_address=ray_address,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = torch.load(out, weights_only=True)
    assert data["filenames"] == ["a.jpg"] and data["embeddings"].shape == (1, 512)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["checkpont=x"], "Unknown argument 'checkpont'. Did you mean 'checkpoint'?"),
        (["batch_size=abc"], "Invalid value 'abc' for 'batch_size': expected int > 0"),
        (["format=xml"], "valid formats are csv, lightly_csv, parquet, torch"),
        (["data"], "Argument 'data' is not of the form key=value"),
        (["num_workers=-2"], "expected int > 0 or 'auto'"),
    ],
)
def test_embed_argument_errors(tmp_path: Path, args: list[str], message: str) -> None:
    base = [f"out={tmp_path / 'e.pth'}", f"data={tmp_path}", "checkpoint=c.ckpt"]
    result = run_cli("embed", *base, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_embed_missing_required_argument() -> None:
    result = run_cli("embed", "out=e.pth")
    assert result.returncode == 2
    assert "Missing required argument 'data'" in result.stderr
    assert "Missing required argument 'checkpoint'" in result.stderr


def test_embed_existing_out_is_not_clobbered(tmp_path: Path, checkpoint) -> None:
    write_image(tmp_path / "a.png", "RGB", size=(8, 8), seed=0)
    out = tmp_path / "e.pth"
    out.write_bytes(b"keep me")
    result = run_cli(
        "embed", f"out={out}", f"data={tmp_path}", f"checkpoint={checkpoint}"
    )
    assert result.returncode == 2
    assert "already exists. Pass overwrite=True" in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == b"keep me"


def test_unknown_command() -> None:
    result = run_cli("embedd")
    assert result.returncode == 2
    assert "No such command 'embedd'" in result.stderr


def test_train_then_embed_as_in_the_spec(tmp_path: Path) -> None:
    # As on a user's 2-CPU laptop: in the command's process (joining a Ray:
    # test_embed_runs_end_to_end here, tests/integration/test_job_submit.py).
    data = tmp_path / "my_data_dir"
    for i in range(8):
        write_image(data / f"{i}.jpg", "RGB", size=(36, 36), seed=i)
    experiment = tmp_path / "out" / "my_experiment"
    result = run_cli(
        "pretrain", f"out={experiment}", f"data={data}", "model=torchvision/resnet18",
        "epochs=1", "batch_size=4", "transform_args.image_size=[32,32]",
        "method_args.temperature=0.2", "embed_dim=8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((experiment / "config.json").read_text())
    assert config["method_args"]["temperature"] == 0.2
    assert config["transform_args"]["image_size"] == [32, 32]

    out = tmp_path / "my_embeddings.pth"
    checkpoint = experiment / "checkpoints" / "last.ckpt"
    result = run_cli(
        "embed", f"out={out}", f"data={data}", f"checkpoint={checkpoint}",
        "format=torch", "image_size=32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    embeddings = torch.load(out, weights_only=True)
    assert embeddings["filenames"] == [f"{i}.jpg" for i in range(8)]
    assert embeddings["embeddings"].shape == (8, 8)


def test_train_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "train", f"out={tmp_path / 'o'}", f"data={tmp_path}", "model=resnet18"
    )
    assert result.returncode == 2
    assert "Did you mean 'torchvision/resnet18'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_small_input_stem_trains_embeds_and_exports(tmp_path: Path) -> None:
    # In the command's process (2 CPUs, no RAY_ADDRESS): the model, not Ray.
    data = tmp_path / "data"
    for i in range(8):
        write_image(data / f"{i}.png", "RGB", size=(32, 32), seed=i)
    run = tmp_path / "run"
    result = run_cli(
        "train", f"out={run}", f"data={data}", "model=torchvision/resnet18",
        "model_args.small_input=true", "epochs=1", "batch_size=4",
        "transform_args.image_size=32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    checkpoint = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "e.pth"
    result = run_cli(
        "embed", f"out={out}", f"data={data}", f"checkpoint={checkpoint}",
        "format=torch",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert torch.load(out, weights_only=True)["embeddings"].shape == (8, 512)
    # The exported backbone loads strictly into the model of the same model_args.
    net = build_full_model("torchvision/resnet18", {"small_input": True})
    state = torch.load(run / "exported_models" / "exported_last.pt", weights_only=True)
    assert net.load_state_dict(state).missing_keys == []
    assert state["conv1.weight"].shape[-2:] == (3, 3)


def test_data_list_of_bare_directories(tmp_path: Path, checkpoint) -> None:
    # As a LightlyTrain user types it: the second directory is named in the error,
    # so the list was parsed into two paths (and nothing started).
    here = tmp_path / "dir_a"
    here.mkdir()
    result = run_cli(
        "embed", f"out={tmp_path / 'e.pth'}", f"data=[{here},{tmp_path / 'dir_b'}]",
        f"checkpoint={checkpoint}",
    )  # fmt: skip
    assert result.returncode == 2
    assert f"Data path '{tmp_path / 'dir_b'}' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
