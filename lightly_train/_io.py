"""Output checks: ``out`` is refused before any work if it cannot be written (it
appears only when complete, through ``lightly_train.data.publish``)."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from lightly_train.data import storage

# Re-exported: the embed pipeline imports the atomic publish from here.
from lightly_train.errors import LightlyTrainError


def check_out_dir(out: str, overwrite: bool, pattern: str) -> str:
    """Like ``check_out_file`` for an output directory (or prefix) of ``pattern``
    files. With ``overwrite`` an existing one is replaced only if it holds nothing
    but such files, so a mistyped ``out`` never deletes a user's directory.
    """
    kind = storage.file_type(out)
    if kind == "file":
        raise LightlyTrainError(
            f"Output '{out}' is a file; this format writes a directory of "
            f"{pattern} files. Pass a directory path."
        )
    names = storage.entries(out) if kind == "directory" else []
    if names and not overwrite:
        raise LightlyTrainError(
            f"Output '{out}' already exists. Pass overwrite=True to replace it, "
            "or choose another out."
        )
    foreign = [
        name
        for name in names
        if not PurePosixPath(name).match(pattern) and name != storage.MANIFEST
    ]
    if foreign:
        raise LightlyTrainError(
            f"Output '{out}' holds files this tool did not write ({foreign[:3]}); "
            "refusing to replace it even with overwrite=True. Choose another out."
        )
    check_writable(out)
    storage.make_parents(out)
    return out


def check_out_file(out: str, overwrite: bool, example: str) -> str:
    """Fails before any work if ``out`` (a path or URI) cannot be written; creates
    the parents of a local path. ``example`` is a file name suggested when ``out``
    is a directory.
    """
    kind = storage.file_type(out)
    if kind == "directory":
        raise LightlyTrainError(
            f"Output '{out}' is a directory. Pass a file path, e.g. "
            f"out={storage.join(out, example)}."
        )
    if kind == "file" and not overwrite:
        raise LightlyTrainError(
            f"Output '{out}' already exists. Pass overwrite=True to replace it, or "
            "choose another out."
        )
    check_writable(out)
    storage.make_parents(out)
    return out


def check_writable(out: str | Path, directory: bool = False) -> None:
    """Fails if a local ``out`` (a ``directory`` to write into) cannot be created:
    the nearest existing directory that holds it (or is it) must take new files (a
    nameless probe file, gone when closed). A remote ``out`` is left to its first
    write."""
    path = storage.local_path(str(out))
    if path is None:
        return
    above = path.absolute() if directory else path.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        problem = f"'{above}' is a file, not a directory"
    else:
        try:
            with tempfile.TemporaryFile(dir=above, prefix=".lightly-train-probe-"):
                return
        except OSError as ex:
            problem = f"no file can be created in '{above}' ({ex.strerror})"
    raise LightlyTrainError(
        f"Output '{out}' cannot be written: {problem}. Choose an out in a "
        "directory you can write to."
    )
