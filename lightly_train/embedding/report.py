"""What an ``embed`` run reports: its summary and log line, and for images that
cannot be decoded ``<out>.failed.csv`` beside the output, the error of
``on_error="raise"``, and the check that not all of them failed."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass

from lightly_train.data.publish import output_location
from lightly_train.errors import LightlyTrainError

logger = logging.getLogger(__name__)

SHOWN_FAILURES = 10  # failures the log names; <out>.failed.csv has all


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


@dataclass(frozen=True)
class EmbedSummary:
    """What an ``embed`` run wrote."""

    out: str  # a path or URI, as given
    num_images: int
    dim: int
    failed: dict[str, str]  # filename -> why it could not be decoded
    seconds: float
    failed_report: str = ""  # <out>.failed.csv: path or URI
    ray_logs: str = ""  # this machine's directory of the Ray session's logs


def log_summary(summary: EmbedSummary) -> None:
    if summary.failed:
        first = list(summary.failed.items())[:SHOWN_FAILURES]
        listing = "\n".join(f"  {name}: {why}" for name, why in first)
        more = len(summary.failed) - len(first)
        logger.warning(
            f"{len(summary.failed)} images could not be decoded and are left out "
            f"of the output; all are listed in '{summary.failed_report}'"
            + (f", the first {len(first)}" if more else "")
            + f":\n{listing}"
        )
    rate = summary.num_images / summary.seconds if summary.seconds > 0 else 0.0
    skipped = f" ({len(summary.failed)} skipped)" if summary.failed else ""
    logger.info(
        f"Embedded {summary.num_images} images{skipped}, dim {summary.dim}, in "
        f"{summary.seconds:.1f} s ({rate:.1f} images/s). "
        f"Embeddings written to '{summary.out}'."
        + (f" Ray's logs: '{summary.ray_logs}'." if summary.ray_logs else "")
    )
