"""Background work of the driver: ``in_background`` and what ``embed`` defers to it."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from lightly_train._background import in_background


def test_result_comes_from_another_thread() -> None:
    loading = in_background(lambda: threading.current_thread().name)
    name = loading.result(timeout=10)
    assert name != threading.current_thread().name
    assert name.startswith("lightly-train-")


def test_an_error_is_raised_where_the_result_is_taken() -> None:
    def fail() -> None:
        raise ValueError("bad checkpoint")

    loading = in_background(fail)
    with pytest.raises(ValueError, match="bad checkpoint"):
        loading.result(timeout=10)


def test_embed_driver_imports_no_torch_before_its_checkpoint_thread() -> None:
    """The pipeline module (and the checkpoint file check) import no torch: torch
    loads in the checkpoint thread while Ray starts."""
    code = (
        "import sys\n"
        "from lightly_train.embedding import pipeline\n"
        "from lightly_train.checkpoint import check_checkpoint_file\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"
