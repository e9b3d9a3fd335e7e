"""out/metrics.png from metrics.jsonl rows."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightly_train.training.plots import plot_metrics


def write_rows(path: Path, steps: int) -> None:
    rows = [{"step": s, "epoch": 0, "loss": 5 - s / steps, "lr": 0.1 * s / steps,
             "time": 0.0} for s in range(1, steps + 1)]  # fmt: skip
    rows.append({"epoch_end": 0, "step": steps, "loss": 4.0, "time": 0.0})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_plot_has_loss_and_lr(tmp_path: Path) -> None:
    write_rows(tmp_path / "metrics.jsonl", 20)
    path = plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "metrics.png")
    assert path == tmp_path / "metrics.png"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert image.format == "PNG" and pixels.shape == (500, 700, 3)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 80)  # the loss line
    orange = (pixels[..., 0] > 200) & (pixels[..., 2] < 80)  # the lr line
    assert blue[:250].sum() > 100 and orange[250:].sum() > 100
    assert sorted(tmp_path.iterdir()) == [tmp_path / "metrics.jsonl", path]


def test_without_matplotlib_one_line_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_rows(tmp_path / "metrics.jsonl", 3)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    with caplog.at_level(logging.INFO):
        assert plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "m.png") is None
    assert "pip install 'lightly-train[viz]'" in caplog.text
    assert not (tmp_path / "m.png").exists()
