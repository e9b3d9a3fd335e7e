"""Resumable ``embed``: a run's progress, kept in a hidden work directory beside
``out``, so that ``resume_interrupted=True`` embeds only the rows not yet done.

The work directory ``<parent>/.<out name>.embed-work/`` holds:

- ``fingerprint.json``: what the rows depend on (the checkpoint file's path, size
  and mtime, image size, precision, JPEG decode, the sorted file list); a resume
  must match it;
- ``vectors.npy``: the ``(N, D)`` float32 rows the driver gathers into
  (``vectors.VectorFile``);
- ``done.npy``: which rows are in ``vectors.npy`` (or failed to decode);
- ``errors.json``: why each failed row failed;
- ``output-rows.npy``, while ``format=torch`` is written from a run with failed
  rows: the kept rows, compact (``writers.output_rows``).

It is saved every ``SAVE_EVERY_S`` seconds while rows arrive (60, or the
environment variable ``LIGHTLY_TRAIN_EMBED_SAVE_EVERY_S``) and when a run stops on
an error or an interrupt; a finished run removes it. A driver killed outright
(SIGKILL, the OOM killer) loses only the rows since the last save: a vector is in
the file once written, before ``done.npy`` marks it done, and the other files are
written beside their names and renamed, so a kill mid-save leaves the last save
whole.

For an ``out`` on remote storage the work directory lies in the local cache
(``~/.cache/lightly-train``), keyed by the URI, as the vectors need a local disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from lightly_train.data import storage
from lightly_train.data.names import ImageFiles
from lightly_train.data.publish import atomic_path, output_location
from lightly_train.embedding.config import EmbedConfig
from lightly_train.embedding.vectors import VectorFile
from lightly_train.embedding.writers import SHARDED_WRITERS, ShardedWriter
from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)

SAVE_EVERY_S = float(os.environ.get("LIGHTLY_TRAIN_EMBED_SAVE_EVERY_S", "60"))
VERSION = 1
NAMES_PER_UPDATE = 100_000


def work_dir(out: str, sharded: bool = False) -> str:
    """Where the progress of an ``embed`` to ``out`` is kept: beside ``out``, on
    its storage, where the tasks of every node write a sharded format's fragments.
    A gathered format's vectors need a local disk: for a remote ``out`` it lies
    in the local cache, keyed by the URI."""
    if not sharded and storage.local_path(out) is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        digest = hashlib.sha256(out.encode()).hexdigest()[:16]
        return str(cache / "lightly-train" / "embed-work" / digest)
    return storage.beside(out, f".{storage.base_name(out)}.embed-work")


def fingerprint(config: EmbedConfig, files: ImageFiles) -> dict[str, Any]:
    """What the rows of a run depend on (not batch size, workers or format). The
    checkpoint by its file's stamp: hashing its weights would cost every run
    (resumed or not) a pass over hundreds of MB."""
    names = hashlib.sha256()
    for start in range(0, len(files), NAMES_PER_UPDATE):  # bounded memory
        names.update("\0".join(files.filenames[start:start + NAMES_PER_UPDATE])
                     .encode() + b"\0")  # fmt: skip
    return {
        "version": VERSION,
        "checkpoint": storage.stamp(str(config.checkpoint)),
        "model": type(config.model).__name__ if config.model is not None else None,
        "image_size": list(config.size),
        "precision": config.precision,
        "jpeg_decode": config.jpeg_decode,
        "num_files": len(files),
        "files": names.hexdigest(),
    }


class WorkState:
    """The rows of one run of a gathered format: done, failed, and their vectors
    (once a batch has shown the dimension), in a local work directory."""

    def __init__(self, work: str, num_rows: int) -> None:
        self.work = Path(work)
        self.done = np.zeros(num_rows, dtype=bool)
        self.errors: dict[int, str] = {}
        self.vectors: VectorFile | None = None
        self.last_save = time.monotonic()

    @property
    def num_done(self) -> int:
        return int(self.done.sum())

    @property
    def saved(self) -> int:
        """Rows saved in the work directory."""
        path = self.work / "done.npy"
        return int(np.load(path).sum()) if path.is_file() else 0

    def vectors_for(self, dim: int) -> VectorFile:
        if self.vectors is None:
            self.vectors = VectorFile.create(
                self.work / "vectors.npy", len(self.done), dim
            )
        return self.vectors

    def add(self, idx: np.ndarray, errors: dict[int, str]) -> None:
        """Marks rows ``idx`` done (their vectors are written), some of them failed."""
        self.done[idx] = True
        self.errors.update(errors)
        if time.monotonic() - self.last_save >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Vectors first, then the bitmap: a row marked done has its vector."""
        if self.vectors is not None:
            self.vectors.flush()
        with atomic_path(self.work / "errors.json") as tmp:
            tmp.write_text(json.dumps(self.errors), encoding="utf-8")  # all done
        with atomic_path(self.work / "done.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.done)
        self.last_save = time.monotonic()

    def remove(self) -> None:
        if self.vectors is not None:
            self.vectors.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def load(self) -> None:
        """Reads the progress saved in the work directory."""
        work = self.work
        if not (work / "done.npy").is_file():
            return  # never saved: no row is done (a vectors.npy may be cut off)
        self.done = np.load(work / "done.npy")
        # A save killed between its two renames leaves errors of rows not done.
        errors = json.loads((work / "errors.json").read_text(encoding="utf-8"))
        self.errors = {int(i): e for i, e in errors.items() if self.done[int(i)]}
        if (work / "vectors.npy").is_file():
            self.vectors = VectorFile.open(work / "vectors.npy")
        else:
            self.done[:] = False  # no vector was ever written


class ShardWork:
    """The rows of one run of a sharded format: the fragments its tasks wrote into
    the work location, on the output's storage. A fragment is saved as soon as it
    is written, so there is nothing else to save."""

    def __init__(self, work: str, num_rows: int, writer: ShardedWriter) -> None:
        self.work = work
        self.done = np.zeros(num_rows, dtype=bool)  # by earlier runs
        self.errors: dict[int, str] = {}
        self.writer = writer
        self.new = 0  # rows this run's fragments reported

    @property
    def num_done(self) -> int:
        return int(self.done.sum()) + self.new

    @property
    def saved(self) -> int:
        return int(self.writer.scan(self.work, len(self.done))[0].sum())

    def save(self) -> None:
        """Each fragment is saved when written; this counts them all, also those
        whose rows did not reach the driver before a run stopped."""
        self.load()
        self.new = 0

    def remove(self) -> None:
        storage.remove_tree(self.work)

    def load(self) -> None:
        self.done, self.errors = self.writer.scan(self.work, len(self.done))


def open_work(
    out: str,
    expected: dict[str, Any],
    resume: bool,
    overwrite: bool,
    writer: ShardedWriter | None = None,
) -> WorkState | ShardWork:
    """The progress of the run to ``out``: new, or an interrupted run's to resume.
    ``writer``: of a sharded format, else the format is gathered.

    Fails, writing nothing, when a leftover run is in the way or cannot be resumed.
    """
    if resume and overwrite:
        raise LightlyTrainError(
            "Pass either resume_interrupted=True or overwrite=True, not both."
        )
    work = work_dir(out, sharded=writer is not None)
    num_rows = int(expected["num_files"])

    def state() -> WorkState | ShardWork:
        if writer is None:
            return WorkState(work, num_rows)
        return ShardWork(work, num_rows, writer)

    where = storage.join(work, "fingerprint.json")
    found = storage.file_type(where) == "file"
    if found and not resume and not overwrite:
        raise LightlyTrainError(
            f"'{work}' holds an interrupted embed to '{out}' ({state().saved} of "
            f"{num_rows} images done). Pass resume_interrupted=True to continue it, "
            "or overwrite=True to start over."
        )
    if resume and not found:
        raise LightlyTrainError(
            f"resume_interrupted=True but there is no interrupted embed to '{out}' "
            f"('{work}' does not exist). Run without resume_interrupted."
        )
    if not resume:
        storage.remove_tree(work)
        with output_location(where, directory=False) as tmp:  # whole or none
            Path(tmp).write_text(json.dumps(expected, indent=1) + "\n", "utf-8")
        return state()
    stored = json.loads(storage.read_bytes(where))
    changed = sorted(k for k in expected.keys() | stored.keys()
                     if expected.get(k) != stored.get(k))  # fmt: skip
    if changed:
        raise LightlyTrainError(
            f"The interrupted embed in '{work}' was run with other "
            f"{', '.join(changed)}. Resume with the arguments and data of that run, "
            f"or pass overwrite=True (without resume_interrupted) to start over."
        )
    resumed = state()
    resumed.load()
    return resumed


def work_state(
    config: EmbedConfig, files: ImageFiles, out: str
) -> WorkState | ShardWork:
    """The resumable progress of the run."""
    writer = SHARDED_WRITERS.get(config.format)
    expected = fingerprint(config, files)
    if writer is not None:
        expected["shard_size"] = config.shard_size  # the fragments' shards
    return open_work(out, expected, config.resume_interrupted, config.overwrite, writer)


def keep_progress(state: WorkState | ShardWork) -> None:
    """After a failure or an interrupt: saves what is done, and says how to go on."""
    state.save()
    if not state.num_done:
        state.remove()
        return
    logger.warning(
        f"Stopped with {state.num_done} of {len(state.done)} images embedded, "
        f"saved in '{state.work}'. Continue with the same arguments and "
        "resume_interrupted=True."
    )
