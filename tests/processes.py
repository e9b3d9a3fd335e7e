"""Ray's worker processes of this test session, found by their titles, to kill."""

from __future__ import annotations

import psutil


def ray_processes(title: str) -> list[psutil.Process]:
    """Descendants of this process (the local Ray it started) whose command line,
    which Ray sets to ``ray::<actor class or task name>``, contains ``title``."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if title in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # exited meanwhile
            continue
    return found
