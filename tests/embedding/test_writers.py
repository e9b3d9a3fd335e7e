import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_train.embedding import writers
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
