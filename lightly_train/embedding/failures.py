"""What ``embed`` does with images that cannot be decoded: ``<out>.failed.csv``
beside the output, the error of ``on_error="raise"``, and the check that not all
of them failed."""

from __future__ import annotations

import csv

from lightly_train.data.publish import output_location
from lightly_train.errors import LightlyTrainError


def raise_failure(filename: str, error: str) -> None:
    raise LightlyTrainError(
        f"Cannot decode '{filename}': {error}. Fix or remove the file, or pass "
        "on_error=skip to embed the other images and list the failures in "
        "<out>.failed.csv."
    )


def failure_report_path(out: str) -> str:
    """``<out>.failed.csv`` beside ``out`` (a file, or parquet's directory)."""
    return out.rstrip("/") + ".failed.csv"


def write_failure_report(out: str, failed: dict[str, str]) -> str:
    """Writes ``filename,error`` rows in file order (a header only when none
    failed) beside ``out``, atomically, local or remote; returns its path."""
    report = failure_report_path(out)
    with (
        output_location(report, directory=False) as target,
        open(target, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(["filename", "error"])
        writer.writerows(failed.items())
    return report


def check_some_decoded(failed: dict[str, str], num_files: int) -> None:
    if len(failed) == num_files:
        raise LightlyTrainError(
            f"None of the {num_files} images could be decoded, e.g. "
            f"{next(iter(failed.items()))}. Check that data holds valid images."
        )
