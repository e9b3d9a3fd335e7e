"""What a user sees: the real commands in a subprocess (not a TTY), Ray started by
the command itself, print a few lines of their own and nothing at WARNING/ERROR."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lightly_train._cpu import bf16_hint, native_bf16
from lightly_train._logging import _pump
from lightly_train.checkpoint import create_checkpoint
from tests.images import write_image

EXE = str(Path(sys.executable).with_name("lightly-train"))
NOISE = re.compile(r"WARNING|ERROR|Traceback|\] [A-Za-z_]+\.cc:|\(pid=|Dataset")


def run(*args: str, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([EXE, *args], capture_output=True, text=True,
                            env={**environ, **env}, timeout=400)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return (result.stdout + result.stderr).splitlines()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("terminal") / "imgs"
    for i in range(200):
        write_image(data / f"{i}.png", "RGB", size=(24, 20), seed=i)
    return data


@pytest.mark.parametrize("runner", ["ray", "auto"])  # auto: this process, 2 CPUs
def test_embed_of_200_images_prints_few_lines(
    tmp_path: Path, images, runner: str, request: pytest.FixtureRequest
) -> None:
    ckpt = create_checkpoint(tmp_path / "c.ckpt", model="torchvision/resnet18",
                             image_size=(16, 16))  # fmt: skip
    out = tmp_path / "e.pth"
    lines = run("embed", f"out={out}", f"data={images}", f"checkpoint={ckpt}",
                f"runner={runner}")  # fmt: skip
    assert len(lines) <= 10, "\n".join(lines)
    assert not [line for line in lines if NOISE.search(line)], "\n".join(lines)
    assert f"Embeddings written to '{out}'" in lines[-1]
    assert "Embedded 200 images" in lines[-1]
    assert_bf16_hint(lines, "embeds")
    logs = re.search(r"Ray's logs: '([^']+)'", lines[-1])
    if runner == "auto":
        assert "in this process" in lines[0] and logs is None, "\n".join(lines)
        return
    # Ray's own output went to its session's logs, which the summary names.
    assert logs and Path(logs[1]).is_dir() and any(Path(logs[1]).glob("worker-*"))

    # LIGHTLY_TRAIN_LOG_LEVEL=DEBUG shows Ray's own lines as well (on the session's
    # Ray, joined: the start of another costs the suite its seconds).
    out = tmp_path / "debug.pth"
    lines = run("embed", f"out={out}", f"data={images}", f"checkpoint={ckpt}",
                "runner=ray", LIGHTLY_TRAIN_LOG_LEVEL="DEBUG",
                RAY_ADDRESS=request.getfixturevalue("ray_address"))  # fmt: skip
    assert any("Dataset" in line for line in lines), "\n".join(lines)


def assert_bf16_hint(lines: list[str], doing: str) -> None:
    """One line names bf16 where this machine's CPU computes it in hardware (the
    work runs here: in the command's process or on its local Ray), none elsewhere."""
    hinted = [line for line in lines if "computes bf16" in line]
    if native_bf16():
        assert len(hinted) == 1, "\n".join(lines)
        assert hinted[0].endswith(bf16_hint("32-true", doing))
    else:
        assert hinted == [], "\n".join(lines)


@pytest.mark.parametrize("runner", ["ray", "auto"])  # auto: this process, 2 CPUs
def test_two_epochs_of_train_print_a_line_per_epoch(
    tmp_path: Path, images, runner: str
) -> None:
    out = tmp_path / "run"
    lines = run("train", f"out={out}", f"data={images}",
                "model=torchvision/resnet18", "epochs=2", "batch_size=50",
                "transform_args.image_size=16", f"runner={runner}")  # fmt: skip
    where = "in this process on CPU" if runner == "auto" else "1 cpu worker(s)"
    assert any(where in line for line in lines), "\n".join(lines)
    assert_bf16_hint(lines, "trains")  # this process, or a Ray of this machine
    assert len(lines) <= 25, "\n".join(lines)
    assert not [line for line in lines if NOISE.search(line)], "\n".join(lines)
    epochs = [line for line in lines if " Epoch " in line]
    assert len(epochs) == 2, "\n".join(lines)
    assert re.search(r"Epoch 1/2: step 4/8, loss [\d.]+, lr [\d.e-]+, [\d.]+ images/s, "
                     r"ETA \d+:\d\d\.$", epochs[0])  # fmt: skip
    assert "Epoch 2/2: step 8/8" in epochs[1] and "ETA" not in epochs[1]
    assert "Training done" in lines[-1]
    # Lightning's and the workers' lines went to the run's log instead.
    assert "Trainable params" in (out / "train.log").read_text()


def through_pump(*chunks: bytes) -> bytes:
    """What ``_pump`` passes on when ``chunks`` are written to its pipe."""
    read_in, write_in = os.pipe()
    read_out, write_out = os.pipe()
    pump = threading.Thread(target=_pump, args=(read_in, write_out))
    pump.start()
    for chunk in chunks:
        os.write(write_in, chunk)
    os.close(write_in)
    pump.join()
    os.close(write_out)
    with os.fdopen(read_out, "rb") as f:
        return f.read()


def test_stderr_pump_drops_ray_core_lines_only() -> None:
    ray_line = (b"[2026-12-03 17:43:02,745 E 17976 17976] core_worker.cc:2465: "
                b"Actor 'MapWorker' has constructor arguments\n")  # fmt: skip
    ours = b"17:43:03 INFO: Embedded 64/200 images (32%).\n"
    assert through_pump(ours + ray_line + ours) == ours + ours
    # Split anywhere, even inside the prefix, a Ray line is still dropped.
    assert through_pump(ray_line[:5], ray_line[5:50], ray_line[50:] + ours) == ours
    # A bar redrawn with \r and no newline yet passes at once, as do "[" lines.
    assert through_pump(b"\rEmbedded |###", b"#| 2/4", b"\n[x] done\n") == (
        b"\rEmbedded |####| 2/4\n[x] done\n"
    )
