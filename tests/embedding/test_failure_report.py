"""<out>.failed.csv lists every image that could not be decoded; on_error=raise
fails the job on the first one and writes nothing."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lightly_train
from lightly_train.checkpoint import create_checkpoint
from lightly_train.errors import LightlyTrainError
from tests.images import write_image

EXE = str(Path(sys.executable).with_name("lightly-train"))
BAD = ["b, 'quoted'.jpg", "empty.png"]  # sorted among the good ones: a, b..., c, e


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for name in ["a.png", "c.png", "f.png"]:
        write_image(data / name, "RGB", size=(12, 12), seed=len(name))
    (data / BAD[0]).write_bytes(b"not a jpeg at all")
    (data / BAD[1]).write_bytes(b"")
    return data


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "c.ckpt"
    return create_checkpoint(path, image_size=(8, 8))


def report_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("format", ["torch", "parquet"])
def test_skipped_images_are_listed_beside_the_output(
    ray_address: str, tmp_path: Path, data, checkpoint, format: str, caplog
) -> None:
    out = tmp_path / ("emb" if format == "parquet" else "emb.pth")
    with caplog.at_level(logging.WARNING, logger="lightly_train"):
        summary = lightly_train.embed(out=out, data=data, checkpoint=checkpoint,
                                      format=format, image_size=8)  # fmt: skip
    report = tmp_path / f"{out.name}.failed.csv"
    assert summary.failed_report == str(report)
    rows = report_rows(report)
    assert rows[0] == ["filename", "error"]
    assert [row[0] for row in rows[1:]] == BAD  # in file order
    assert all(row[1] for row in rows[1:])
    assert summary.num_images == 3
    assert f"all are listed in '{report}'" in caplog.text


def test_report_has_only_its_header_when_nothing_failed(
    ray_address: str, tmp_path: Path, data, checkpoint
) -> None:
    for name in BAD:
        (data / name).unlink()
    out = tmp_path / "emb.pth"
    lightly_train.embed(out=out, data=data, checkpoint=checkpoint, image_size=8)
    assert report_rows(tmp_path / "emb.pth.failed.csv") == [["filename", "error"]]


def test_log_names_the_first_ten_and_the_report(
    ray_address: str, tmp_path: Path, data, checkpoint, caplog
) -> None:
    for i in range(12):
        (data / f"z{i:02d}.jpg").write_bytes(b"")
    out = tmp_path / "emb.pth"
    with caplog.at_level(logging.WARNING, logger="lightly_train"):
        summary = lightly_train.embed(out=out, data=data, checkpoint=checkpoint,
                                      image_size=8)  # fmt: skip
    assert len(summary.failed) == 14
    assert len(report_rows(tmp_path / "emb.pth.failed.csv")) == 15
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("14 images could not be decoded")
    assert "the first 10:" in warning
    assert "z07.jpg" in warning and "z08.jpg" not in warning


def test_on_error_raise_names_the_file_and_writes_nothing(
    ray_address: str, tmp_path: Path, data, checkpoint
) -> None:
    for name in BAD[1:]:
        (data / name).unlink()
    out = tmp_path / "emb.pth"
    with pytest.raises(LightlyTrainError) as ex:
        lightly_train.embed(out=out, data=data, checkpoint=checkpoint, image_size=8,
                            on_error="raise")  # fmt: skip
    assert str(ex.value).startswith(f"Cannot decode '{BAD[0]}': ")
    assert str(ex.value).endswith(
        "Fix or remove the file, or pass on_error=skip to embed the other images "
        "and list the failures in <out>.failed.csv."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    # The same through the CLI: one line, exit code 2.
    result = subprocess.run(
        [EXE, "embed", f"out={out}", f"data={data}", f"checkpoint={checkpoint}",
         "image_size=8", "on_error=raise"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "RAY_ADDRESS": ray_address},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"Error: Cannot decode '{BAD[0]}': ")
    )
    assert "Traceback" not in result.stderr
    assert not out.exists()
