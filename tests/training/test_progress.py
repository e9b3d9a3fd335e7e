"""train's per-epoch lines (and a bar on a terminal), read from metrics.jsonl."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from lightly_train.training import progress
from lightly_train.training.progress import EpochLines


def append(path: Path, *rows: dict) -> None:
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def step(n: int, epoch: int) -> dict:
    return {"step": n, "epoch": epoch, "loss": 5.0, "lr": 0.1, "images_per_s": 32.0}


def test_a_line_per_epoch_from_new_rows_only(tmp_path: Path, caplog) -> None:
    path = tmp_path / "metrics.jsonl"
    append(path, step(2, 0), {"epoch_end": 0, "step": 2, "loss": 6.0})  # a past run
    lines = EpochLines(path, epochs=2, steps_per_epoch=2, global_batch_size=16)
    caplog.set_level(logging.INFO, logger="lightly_train")
    append(path, step(3, 1), step(4, 1), {"epoch_end": 1, "step": 4, "loss": 4.5})
    with open(path, "a") as f:
        f.write('{"step": 5, "ep')  # a row still being written is left for later
    lines.read()
    assert [r.getMessage() for r in caplog.records] == [
        "Epoch 2/2: step 4/4, loss 4.5, lr 0.1, 32.0 images/s."
    ]
    caplog.clear()
    append(tmp_path / "other.jsonl")  # nothing new: nothing logged
    lines.read()
    assert not caplog.records


def test_bar_on_a_terminal_then_the_epoch_line(
    tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(progress, "bar_stream", lambda: stream)
    path = tmp_path / "metrics.jsonl"
    caplog.set_level(logging.INFO, logger="lightly_train")
    with EpochLines(path, epochs=3, steps_per_epoch=4, global_batch_size=8) as lines:
        append(path, step(2, 0), step(4, 0), {"epoch_end": 0, "step": 4, "loss": 5.0})
        lines.read()
    assert stream.getvalue().startswith("\rEpoch 1/3 |")
    assert "32/32 images" in stream.getvalue() and stream.getvalue().endswith("\n")
    assert caplog.records[-1].getMessage() == (
        "Epoch 1/3: step 4/12, loss 5, lr 0.1, 32.0 images/s, ETA 0:02."
    )


def test_rows_cut_by_a_restart_are_read_again(tmp_path: Path, caplog) -> None:
    # A restarted worker group drops the rows past its checkpoint, then redoes them.
    path = tmp_path / "metrics.jsonl"
    lines = EpochLines(path, epochs=2, steps_per_epoch=2, global_batch_size=16)
    caplog.set_level(logging.INFO, logger="lightly_train")
    append(path, step(1, 0), step(2, 0), {"epoch_end": 0, "step": 2, "loss": 6.0})
    append(path, step(3, 1) | {"images_per_s": 1234567.25})
    lines.read()
    kept = path.read_text().rsplit("\n", 2)[0] + "\n"  # step 3 cut
    (tmp_path / "new").write_text(kept)
    (tmp_path / "new").replace(path)
    append(path, step(3, 1), step(4, 1), {"epoch_end": 1, "step": 4, "loss": 4.5})
    lines.read()
    assert [r.getMessage() for r in caplog.records][-1] == (
        "Epoch 2/2: step 4/4, loss 4.5, lr 0.1, 32.0 images/s."
    )
