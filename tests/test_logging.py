"""Library logging manners: importing or calling lightly_train configures nothing;
the CLI prints its lines."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from lightly_train.checkpoint import create_checkpoint

CHECK = """
import logging
import lightly_train, lightly_train.embedding.pipeline, lightly_train.training.train
import lightly_train.exporting, lightly_train.cli
lightly_train.export(out=r"OUT", checkpoint=r"CKPT")
for name, logger in logging.Logger.manager.loggerDict.items():
    if name.startswith("lightly_train") and isinstance(logger, logging.Logger):
        assert not logger.handlers, (name, logger.handlers)
        assert logger.propagate and logger.level == logging.NOTSET, name
assert not logging.getLogger().handlers
print("clean")
"""


def test_import_and_calls_add_no_handlers(tmp_path: Path) -> None:
    ckpt = create_checkpoint(tmp_path / "c.ckpt", image_size=(32, 32))
    code = CHECK.replace("OUT", str(tmp_path / "m.pt")).replace("CKPT", str(ckpt))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert result.stderr == ""  # INFO lines are the application's choice


def test_records_reach_the_application(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import lightly_train

    ckpt = create_checkpoint(tmp_path / "c.ckpt", image_size=(32, 32))
    with caplog.at_level(logging.INFO):
        lightly_train.export(out=tmp_path / "m.pt", checkpoint=ckpt)
    assert "Exported the model (torchvision/resnet18)" in caplog.text


def test_cli_prints_its_lines(tmp_path: Path) -> None:
    ckpt = create_checkpoint(tmp_path / "c.ckpt", image_size=(32, 32))
    exe = str(Path(sys.executable).with_name("lightly-train"))
    result = subprocess.run(
        [exe, "export", f"out={tmp_path / 'm.pt'}", f"checkpoint={ckpt}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("INFO: Exported the model") == 1
