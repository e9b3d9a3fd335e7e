import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_train.embedding import writers
from lightly_train.embedding.vectors import VectorFile
from lightly_train.embedding.writers import WRITERS, Embeddings

SPEC_VECTORS = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=np.float32)
SPEC_NAMES = ["image1.jpg", "image2.jpg"]


def spec_embeddings() -> Embeddings:
    return Embeddings(SPEC_NAMES, SPEC_VECTORS, np.arange(2))


def read_back(fmt: str, path: Path) -> tuple[list[str], np.ndarray]:
    """Reads any format back to (filenames, (N, D) float32)."""
    if fmt == "torch":
        data = torch.load(path, weights_only=True)
        return data["filenames"], data["embeddings"].numpy()
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    end = -1 if fmt == "lightly_csv" else None
    vectors = np.array([r[1:end] for r in rows], dtype=np.float32)
    return [r[0] for r in rows], vectors.reshape(len(rows), -1)


def test_csv_is_byte_exact_per_spec(tmp_path: Path) -> None:
    writers.write_csv(tmp_path / "e.csv", spec_embeddings())
    assert (tmp_path / "e.csv").read_text() == (
        "filename,embedding_0,embedding_1,embedding_2\n"
        "image1.jpg,0.1,0.2,0.3\n"
        "image2.jpg,0.4,0.5,0.6\n"
    )


def test_lightly_csv_is_byte_exact_per_spec(tmp_path: Path) -> None:
    writers.write_lightly_csv(tmp_path / "e.csv", spec_embeddings())
    assert (tmp_path / "e.csv").read_text() == (
        "filenames,embedding_0,embedding_1,embedding_2,labels\n"
        "image1.jpg,0.1,0.2,0.3,0\n"
        "image2.jpg,0.4,0.5,0.6,0\n"
    )


def test_torch_layout_per_spec(tmp_path: Path) -> None:
    writers.write_torch(tmp_path / "e.pth", spec_embeddings())
    data = torch.load(tmp_path / "e.pth", weights_only=True)
    assert set(data) == {"embeddings", "filenames"}
    assert data["filenames"] == SPEC_NAMES
    assert data["embeddings"].dtype == torch.float32
    assert torch.equal(data["embeddings"], torch.from_numpy(SPEC_VECTORS))


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_round_trip_is_exact(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 7)).astype(np.float32) * 1e3
    vectors[0, 0] = 1e-30  # tiny and large magnitudes survive the text formats
    names = ["a.jpg", 'we,ird "ñame".png', "x/y\u00e9.png", "b c.jpg", "z.jpg"]
    writer_path = tmp_path / "out"
    WRITERS[fmt](writer_path, Embeddings(names, vectors, np.arange(5)))
    got_names, got = read_back(fmt, writer_path)
    assert got_names == names
    np.testing.assert_array_equal(got, vectors)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_rows_select_and_order_vectors(tmp_path: Path, fmt: str) -> None:
    # More rows than one chunk, with rows skipped (images that failed to decode).
    vectors = np.arange(3 * (writers.CHUNK_ROWS + 10), dtype=np.float32).reshape(-1, 3)
    rows = np.arange(0, len(vectors), 2)
    names = [f"{i:06d}.png" for i in rows]
    WRITERS[fmt](tmp_path / "out", Embeddings(names, vectors, rows))
    got_names, got = read_back(fmt, tmp_path / "out")
    assert got_names == names
    np.testing.assert_array_equal(got, vectors[rows])


@pytest.mark.parametrize("skipped", [False, True])
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_rows_from_a_vector_file_as_from_memory(
    tmp_path: Path, fmt: str, skipped: bool
) -> None:
    """The gathered file (with or without failed rows to skip) writes its kept rows
    in order, as an array in memory does (``test_rows_select_and_order_vectors``)."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((writers.CHUNK_ROWS + 300, 5)).astype(np.float32)
    file = VectorFile.create(tmp_path / "vectors.npy", len(vectors), 5)
    file[:] = vectors
    rows = np.arange(len(vectors))
    if skipped:
        rows = np.delete(rows, [0, 7, writers.CHUNK_ROWS + 1])
    names = [f"{i:06d}.png" for i in rows]
    WRITERS[fmt](tmp_path / "out", Embeddings(names, file, rows))
    got_names, got = read_back(fmt, tmp_path / "out")
    assert got_names == names
    np.testing.assert_array_equal(got, vectors[rows])


PRIVATE = """
import re, sys
import numpy as np
import torch
from lightly_train.embedding.vectors import VectorFile
from lightly_train.embedding.writers import Embeddings, write_torch

def private_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"RssAnon:\\s*(\\d+)", status)[1]) / 1024

rows, dim = 100_000, 512  # 195 MB
vectors = VectorFile.create(sys.argv[1] + "/vectors.npy", rows, dim)
for start in range(0, rows, 10_000):
    vectors[start : start + 10_000] = np.full((10_000, dim), start, np.float32)
keep = np.arange(rows) if sys.argv[2] == "all" else np.arange(1, rows)
names = [f"{i:06d}" for i in keep]
save, growth = torch.save, []
def measured_save(obj, path):
    save(obj, path)  # the tensor is alive until this returns
    growth.append(private_mb() - before)
torch.save = measured_save
before = private_mb()
write_torch(sys.argv[1] + "/out.pth", Embeddings(names, vectors, keep))
print(growth[0])
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("keep", ["all", "skip one"])
def test_torch_output_is_not_held_in_the_process_memory(
    tmp_path: Path, keep: str
) -> None:
    """195 MB of gathered rows go to ``torch.save`` as a map of the file: the
    driver's private memory does not hold them (it did, as one tensor)."""
    done = subprocess.run(
        [sys.executable, "-c", PRIVATE, str(tmp_path), keep],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert float(done.stdout) < 40
    data = torch.load(tmp_path / "out.pth", weights_only=True)
    first = 0 if keep == "all" else 1
    assert data["embeddings"].shape == (100_000 - first, 512)
    assert data["embeddings"][-1, 0] == 90_000 and data["embeddings"][0, 0] == 0
    assert data["filenames"][0] == f"{first:06d}"
