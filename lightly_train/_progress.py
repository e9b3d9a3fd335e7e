"""Progress of a long loop over images, as a user reads it.

In the ``lightly-train`` executable on a terminal, one bar redrawn in place on
stderr; anywhere else (CI, ``ray job submit`` logs, the Python API) an INFO line on
the ``lightly_train`` logger about every 10 s or every 10% of the total.

Example:
    >>> progress = Progress(total=1800, verb="Embedded")
    >>> progress.update(64)  # 64 more images done
    >>> progress.update(64, failed=1)
    >>> progress.close()
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TextIO

from lightly_train import _logging

logger = logging.getLogger(__name__)

LINE_INTERVAL_S = 10.0  # a progress line at least this often when not on a TTY
LINE_FRACTION = 0.1  # and one each time this fraction more is done
BAR_INTERVAL_S = 0.2  # redraw the bar at most this often
BAR_WIDTH = 24


class Progress:
    """Counts images done (and failed) of ``total`` and shows it.

    Args:
        total: Images the loop will process.
        verb: What is done to them, past tense: ``"Embedded"``.
        stream: Where to draw a bar; ``None`` picks stderr in the CLI when it is a
            terminal, else no bar (then progress goes to log lines).
        clock: Seconds, monotonic; for tests.
    """

    def __init__(
        self,
        total: int,
        verb: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.verb, self.clock = total, verb, clock
        self.stream = stream if stream is not None else _logging.bar_stream()
        self.done = self.failed = 0
        self.start = self.last_shown = clock()
        self.next_fraction = LINE_FRACTION

    def update(self, done: int, failed: int = 0) -> None:
        """Adds ``done`` images, of which ``failed`` could not be processed."""
        self.done += done
        self.failed += failed
        now = self.clock()
        if self.stream is not None:
            if now - self.last_shown >= BAR_INTERVAL_S or self.done >= self.total:
                self.last_shown = now
                self.stream.write("\r" + self.bar(now))
                self.stream.flush()
            return
        fraction = self.done / self.total if self.total else 1.0
        if self.done < self.total and (
            now - self.last_shown >= LINE_INTERVAL_S or fraction >= self.next_fraction
        ):
            self.last_shown = now
            while self.next_fraction <= fraction:
                self.next_fraction += LINE_FRACTION
            logger.info(self.line(now))

    def close(self) -> None:
        """Ends the bar's line, so that what is printed next starts on its own."""
        if self.stream is not None and self.done:
            self.stream.write("\r" + self.bar(self.clock()) + "\n")
            self.stream.flush()

    def rate(self, now: float) -> float:
        elapsed = now - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> str:
        rate = self.rate(now)
        if rate <= 0:
            return "?"
        return duration((self.total - self.done) / rate)

    def failures(self) -> str:
        return f", {self.failed} failed" if self.failed else ""

    def line(self, now: float) -> str:
        percent = 100 * self.done // self.total if self.total else 100
        return (
            f"{self.verb} {self.done}/{self.total} images ({percent}%), "
            f"{self.rate(now):.1f} images/s, ETA {self.eta(now)}{self.failures()}."
        )

    def bar(self, now: float) -> str:
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = round(BAR_WIDTH * fraction)
        return (
            f"{self.verb} |{'#' * filled}{'.' * (BAR_WIDTH - filled)}| "
            f"{self.done}/{self.total} images, {self.rate(now):.1f}/s, "
            f"ETA {self.eta(now)}{self.failures()}  "
        )


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour, rounded up to the second."""
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
