"""Log output: the library only emits records; the CLI and the demo print them.

As a library, ``lightly_train`` adds no handlers and leaves ``propagate`` alone, so
an application's own logging configuration decides what is shown. A Python API
user who wants the progress lines calls ``logging.basicConfig(level=logging.INFO)``
(or configures the ``"lightly_train"`` logger).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOGGER = "lightly_train"


def configure_cli_logging() -> None:
    """Prints ``lightly_train``'s INFO lines to stderr, timestamped: for the
    ``lightly-train`` executable and the demo, which own their process."""
    logger = logging.getLogger(LOGGER)
    if any(getattr(h, "_lightly_train_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%H:%M:%S")
    )
    handler._lightly_train_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the CLI's lines are printed once, here


def bar_stream() -> TextIO | None:
    """stderr, where the CLI draws progress bars, when it is a terminal; else
    ``None``: progress then goes to log lines (CI, job logs, the Python API)."""
    logger = logging.getLogger(LOGGER)
    cli = any(getattr(h, "_lightly_train_cli", False) for h in logger.handlers)
    isatty = getattr(sys.stderr, "isatty", None)
    return sys.stderr if cli and isatty is not None and isatty() else None


@contextmanager
def info_level(logger: logging.Logger) -> Iterator[None]:
    """Lets INFO records through ``logger`` for the block when nobody set its level
    (a run's own log file wants them), then restores it."""
    unset = logger.level == logging.NOTSET
    if unset:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        if unset:
            logger.setLevel(logging.NOTSET)
