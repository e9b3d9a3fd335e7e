"""Log output: the library only emits records; the CLI and the demo print them.

As a library, ``lightly_train`` adds no handlers and leaves ``propagate`` alone, so
an application's own logging configuration decides what is shown. A Python API
user who wants the progress lines calls ``logging.basicConfig(level=logging.INFO)``
(or configures the ``"lightly_train"`` logger).

The CLI and the demo are quiet: the terminal shows lightly_train's own lines, and
Ray's and Lightning's go to log files (Ray's session logs; ``out/train.log``).
``LIGHTLY_TRAIN_LOG_LEVEL=DEBUG`` shows everything, as the Python API does.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOGGER = "lightly_train"
LEVEL_ENV = "LIGHTLY_TRAIN_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_quiet = False


def configure_cli_logging() -> None:
    """Prints ``lightly_train``'s lines to stderr, timestamped, from INFO (or
    ``LIGHTLY_TRAIN_LOG_LEVEL``), and keeps Ray's and Lightning's off the terminal
    unless that level is DEBUG: for the ``lightly-train`` executable and the demo,
    which own their process."""
    global _quiet
    logger = logging.getLogger(LOGGER)
    if any(getattr(h, "_lightly_train_cli", False) for h in logger.handlers):
        return
    level = os.environ.get(LEVEL_ENV, "INFO").upper()
    if level not in LEVELS:
        logger.warning(f"Ignoring {LEVEL_ENV}={level}: use one of {', '.join(LEVELS)}.")
        level = "INFO"
    _quiet = level != "DEBUG"
    if _quiet:
        drop_ray_core_lines()
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%H:%M:%S")
    )
    handler._lightly_train_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the CLI's lines are printed once, here


def quiet() -> bool:
    """Whether Ray's and Lightning's output stays off the terminal (the CLI)."""
    return _quiet


def quiet_ray_data() -> None:
    """Turns Ray Data's console lines and progress bars off in quiet mode; they
    stay in Ray Data's log in the session directory."""
    if not _quiet:
        return
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # not its session file
            handler.setLevel(logging.CRITICAL + 1)


def bar_stream() -> TextIO | None:
    """stderr, where the CLI draws progress bars, when it is a terminal; else
    ``None``: progress then goes to log lines (CI, job logs, the Python API)."""
    logger = logging.getLogger(LOGGER)
    cli = any(getattr(h, "_lightly_train_cli", False) for h in logger.handlers)
    return sys.stderr if cli and _stderr_is_terminal() else None


def _stderr_is_terminal() -> bool:
    if _real_stderr_fd is not None:  # fd 2 is drop_ray_core_lines' pipe
        return os.isatty(_real_stderr_fd)
    isatty = getattr(sys.stderr, "isatty", None)
    return isatty is not None and isatty()


# A line of Ray's C++ core: "[2026-12-03 17:43:02,745 E 17976 17976] file.cc:12: ..."
RAY_CORE_LINE = re.compile(
    rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] "
)
_real_stderr_fd: int | None = None


def drop_ray_core_lines() -> None:
    """Keeps the lines of Ray's C++ core off the terminal (they are in its log
    files): it writes them to file descriptor 2 directly, e.g. an ERROR for every
    Ray Data actor pool ("has constructor arguments in the object store"), where
    Python's logging cannot filter them. fd 2 becomes a pipe whose reader thread
    passes every other byte on to the real stderr as it arrives, so bars drawn with
    ``\\r`` still show at once. Its real errors reach the CLI as exceptions.
    """
    global _real_stderr_fd
    if _real_stderr_fd is not None:
        return
    sys.stderr.flush()
    _real_stderr_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(
        target=_pump, args=(read_fd, _real_stderr_fd), daemon=True, name="stderr"
    )
    pump.start()

    def restore() -> None:
        sys.stderr.flush()
        assert _real_stderr_fd is not None
        os.dup2(_real_stderr_fd, 2)  # the pipe ends when Ray's processes exit
        pump.join(timeout=2.0)

    atexit.register(restore)


def _pump(read_fd: int, out_fd: int) -> None:
    """Copies ``read_fd`` to ``out_fd`` but for the lines of Ray's C++ core."""
    mode = "start"  # at a line's start; "pass" or "drop" until its end
    held = b""  # the start of a line, too short yet to tell whether it is Ray's
    while chunk := os.read(read_fd, 65536):
        out, i = bytearray(), 0
        while i < len(chunk):
            newline = chunk.find(b"\n", i)
            end = len(chunk) if newline < 0 else newline + 1
            piece, i = chunk[i:end], end
            if mode == "start":
                piece, held = held + piece, b""
                if newline < 0 and len(piece) < 64 and piece[:1] == b"[":
                    held = piece
                    continue
                mode = "drop" if RAY_CORE_LINE.match(piece) else "pass"
            if mode == "pass":
                out += piece
            if newline >= 0:
                mode = "start"
        os.write(out_fd, bytes(out))
    os.write(out_fd, held)


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


@contextmanager
def lightning_to_log_file() -> Iterator[None]:
    """In quiet mode (the CLI), for the block: Lightning's console handler and
    Python warnings (Lightning's hints, torch's) stay off the terminal; both go to
    the ``lightning.pytorch`` logger's other handlers (the run's ``train.log``), as
    from a Ray Train worker they go to its log. Otherwise nothing changes."""
    if not _quiet:
        yield
        return
    log = logging.getLogger("lightning.pytorch")
    console = [h for h in log.handlers if type(h) is logging.StreamHandler]
    levels = [h.level for h in console]
    for handler in console:
        handler.setLevel(logging.CRITICAL + 1)

    def to_log(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        log.warning(f"{category.__name__}: {message} ({filename}:{lineno})")

    try:
        with warnings.catch_warnings():
            warnings.showwarning = to_log
            yield
    finally:
        for handler, level in zip(console, levels, strict=True):
            handler.setLevel(level)
