"""examples/explore_embeddings.py on every output format, from the real writers."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lightly_train.embedding.shards import parquet_table
from lightly_train.embedding.writers import WRITERS, Embeddings
from tests.images import write_image

EXPLORE = runpy.run_path(
    str(Path(__file__).parents[1] / "examples" / "explore_embeddings.py")
)


@pytest.fixture
def embedded(tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    """Six images; 'b/dup.png' is a near-copy of 'a/0.png' in embedding space."""
    names = ["a/0.png", "a/1.png", "a/2.png", "b/3.png", "b/dup.png", "c d.png"]
    for i, name in enumerate(names):
        write_image(tmp_path / "data" / name, "RGB", size=(30, 20), seed=i)
    vectors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    vectors[4] = vectors[0] + 0.01
    return tmp_path, names, vectors


@pytest.mark.parametrize("fmt", ["torch", "csv", "lightly_csv", "parquet"])
def test_reads_every_format_and_draws(embedded, fmt: str) -> None:
    root, names, vectors = embedded
    if fmt == "parquet":
        path = root / "emb"
        path.mkdir()
        pq.write_table(
            parquet_table(names[:3], vectors[:3]), path / "part-00000.parquet"
        )
        pq.write_table(
            parquet_table(names[3:], vectors[3:]), path / "part-00001.parquet"
        )
        with pytest.raises(SystemExit, match="no _manifest.json"):  # incomplete
            EXPLORE["read_embeddings"](path)
        parts = {"part-00000.parquet": 3, "part-00001.parquet": 3}
        (path / "_manifest.json").write_text(json.dumps({"parts": parts}))
    else:
        path = root / ("emb.pth" if fmt == "torch" else "emb.csv")
        WRITERS[fmt](path, Embeddings(names, vectors, np.arange(6)))
    filenames, read = EXPLORE["read_embeddings"](path)
    assert filenames == names
    np.testing.assert_allclose(read, vectors, rtol=1e-6)

    out = EXPLORE["main"]([str(path), "--data", str(root / "data"),
                           "--out", str(root / "x.png")])  # fmt: skip
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 800
    pairs = EXPLORE["most_similar_pairs"](read @ read.T / np.outer(
        np.linalg.norm(read, axis=1), np.linalg.norm(read, axis=1)), 1)  # fmt: skip
    assert pairs == [(0, 4)]


def test_missing_embeddings_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="Embeddings '.*nope.pth' do not exist"):
        EXPLORE["main"]([str(tmp_path / "nope.pth"), "--data", str(tmp_path)])
