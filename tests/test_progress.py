"""Progress: a bar on a terminal, else a log line every 10% or 10 s."""

from __future__ import annotations

import io
import logging

import pytest

from lightly_train._progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_tenth_and_every_ten_seconds(caplog) -> None:
    clock = Clock()
    progress = Progress(total=1000, verb="Embedded", clock=clock)
    caplog.set_level(logging.INFO, logger="lightly_train")
    for _ in range(20):  # 50 images a second, 50 per update
        clock.now += 1.0
        progress.update(50, failed=1 if clock.now == 104.0 else 0)
    lines = [r.getMessage() for r in caplog.records]
    # 10%, 20%, ... 90%; not 100%: the summary follows.
    assert len(lines) == 9
    assert lines[0] == "Embedded 100/1000 images (10%), 50.0 images/s, ETA 0:18."
    assert lines[1] == (
        "Embedded 200/1000 images (20%), 50.0 images/s, ETA 0:16, 1 failed."
    )

    caplog.clear()
    slow = Progress(total=10_000, verb="Embedded", clock=clock)
    for _ in range(6):  # 5 s per 10 images: 0.1% per update, a line per 10 s
        clock.now += 5.0
        slow.update(10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[-1].startswith(
        "Embedded 60/10000 images (0%), 2.0 images/s, ETA 1:22:"
    )


def test_bar_redraws_in_place_and_ends_its_line() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(total=100, verb="Embedded", stream=stream, clock=clock)
    for _ in range(4):
        clock.now += 0.5
        progress.update(25)
    progress.close()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 5  # each update at >= 0.2 s, then the closing one
    assert frames[0].startswith("Embedded |######..................| 25/100 images")
    assert frames[-1].startswith("Embedded |########################| 100/100 images")
    assert frames[-1].endswith("\n") and "\n" not in "".join(frames[:-1])


@pytest.mark.parametrize("total", [0, 1])
def test_small_totals_do_not_divide_by_zero(total: int) -> None:
    clock = Clock()
    progress = Progress(total=total, verb="Embedded", clock=clock)
    progress.update(total)
    assert progress.line(clock.now).startswith(f"Embedded {total}/{total} images")
    progress.close()
