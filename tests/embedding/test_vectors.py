"""The gathered rows' file: array semantics by row, an ordinary .npy, and no growth
of the process's resident memory with the rows written and read."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightly_train.embedding.vectors import VectorFile


def test_rows_in_any_order_read_back_as_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    expected = np.zeros((1000, 7), dtype=np.float32)
    vectors = VectorFile.create(tmp_path / "v.npy", 1000, 7)
    # Blocks of consecutive rows in a shuffled order, as batches arrive.
    for block in np.array_split(rng.permutation(1000), 37):
        rows = np.concatenate([block, block[:3] + 0])  # repeated rows too
        values = rng.normal(size=(len(rows), 7)).astype(np.float32)
        values[-3:] = values[:3]
        vectors[rows] = values
        expected[rows] = values
    vectors[5] = np.arange(7)
    expected[5] = np.arange(7)
    np.testing.assert_array_equal(vectors[np.arange(1000)], expected)
    picks = rng.choice(1000, 50)
    np.testing.assert_array_equal(vectors[picks], expected[picks])
    np.testing.assert_array_equal(vectors[-1], expected[-1])
    np.testing.assert_array_equal(vectors[10:20], expected[10:20])
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), expected)
    reopened = VectorFile.open(tmp_path / "v.npy")
    assert reopened.shape == (1000, 7)
    np.testing.assert_array_equal(reopened[::3], expected[::3])
    with pytest.raises(IndexError):
        reopened[[1000]]


def test_other_arrays_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.zeros((3, 2), dtype=np.float64))
    with pytest.raises(ValueError, match="not a C-ordered"):
        VectorFile.open(tmp_path / "d.npy")


PEAK = """
import re, sys
import numpy as np
from lightly_train.embedding.vectors import VectorFile
def peak_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmHWM:\\s*(\\d+)", status)[1]) / 1024
path, kind = sys.argv[1], sys.argv[2]
rows, dim = 100_000, 512  # 195 MB
if kind == "file":
    vectors = VectorFile.create(path, rows, dim)
else:
    vectors = np.lib.format.open_memmap(path, "w+", np.float32, (rows, dim))
before = peak_mb()
block = np.ones((1000, dim), dtype=np.float32)
for start in range(0, rows, 1000):
    vectors[np.arange(start, start + 1000)] = block
for start in range(0, rows - 4096, 4096):
    assert vectors[np.arange(start, start + 4096)].min() == 1
print(peak_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_rows_do_not_stay_in_the_process_memory(tmp_path: Path) -> None:
    """195 MB of rows written and read back: a memory map keeps them in the
    process's resident set, the file does not."""

    def growth(kind: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", PEAK, str(tmp_path / f"{kind}.npy"), kind],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(done.stdout)

    assert growth("memmap") > 150
    assert growth("file") < 30
