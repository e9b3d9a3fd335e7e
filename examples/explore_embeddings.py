"""Look at embeddings: a 2D map with thumbnails, nearest neighbours, near-duplicates.

    python examples/explore_embeddings.py EMBEDDINGS --data DIR [--out explore.png]
        [--queries 4] [--neighbours 5] [--pairs 6] [--max-points 2000]

EMBEDDINGS is any output of ``lightly-train embed``: a ``.pth`` (format=torch), a
``.csv`` (csv or lightly_csv) or a directory of ``part-*.parquet`` shards. DIR is the
``data`` the images were embedded from (filenames are relative to it). Writes one PNG:
- left: the embeddings projected to 2D (UMAP when ``umap-learn`` is installed, else
  PCA), each point drawn as its image's thumbnail;
- top right: for a few query images (evenly spaced in filename order), their
  nearest neighbours by cosine similarity;
- bottom right: the most similar pairs, the likeliest near-duplicates.
Above ``--max-points`` images, an even sample of that many is drawn and searched.
Needs matplotlib (``pip install 'lightly-train[viz]'``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

THUMB = 48  # thumbnail side in pixels


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    """(filenames, (N, D) float32) from any output format of ``embed``."""
    if path.is_dir():  # parquet shards, in order, once the manifest says complete
        import pyarrow.parquet as pq

        manifest = path / "_manifest.json"
        if not manifest.is_file():
            raise SystemExit(f"{path} has no _manifest.json: the embed is incomplete.")
        parts = json.loads(manifest.read_text())["parts"]
        table = pq.read_table([path / name for name in sorted(parts)])
        flat = table.column("embedding").combine_chunks().flatten().to_numpy()
        return table.column("filename").to_pylist(), flat.reshape(len(table), -1)
    if path.suffix == ".csv":  # csv: filename,...; lightly_csv: filenames,...,labels
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header, rows = rows[0], rows[1:]
        columns = [i for i, name in enumerate(header) if name.startswith("embedding_")]
        vectors = np.array([[float(r[i]) for i in columns] for r in rows], np.float32)
        return [r[0] for r in rows], vectors.reshape(len(rows), len(columns))
    import torch

    data = torch.load(path, weights_only=True)
    return list(data["filenames"]), data["embeddings"].float().numpy()


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates and the method's name: UMAP if installed, else PCA."""
    try:
        import umap  # type: ignore[import-not-found]

        return umap.UMAP(metric="cosine", random_state=0).fit_transform(vectors), "UMAP"
    except ImportError:
        centred = vectors - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        return centred @ vt[:2].T, "PCA"


def thumbnail(data: Path, filename: str) -> np.ndarray:
    """The image as a THUMB x THUMB RGB array; grey when it cannot be read."""
    try:
        with Image.open(data / filename) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMB, THUMB))
            canvas = Image.new("RGB", (THUMB, THUMB), (255, 255, 255))
            canvas.paste(
                image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2)
            )
            return np.asarray(canvas)
    except OSError:
        return np.full((THUMB, THUMB, 3), 128, np.uint8)


def most_similar_pairs(similarity: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The ``k`` index pairs (i < j) of highest similarity."""
    upper = np.triu(similarity, 1) - np.tril(np.full_like(similarity, 2.0))
    flat = np.argsort(upper, axis=None)[::-1][:k]
    return [tuple(int(v) for v in np.unravel_index(f, upper.shape)) for f in flat]


def draw(filenames: list[str], vectors: np.ndarray, data: Path, out: Path,
         args: argparse.Namespace) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    thumbs = [thumbnail(data, name) for name in filenames]
    coords, method = project_2d(unit)

    n_cols = args.neighbours + 1
    fig = plt.figure(figsize=(18, 9))
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1])
    ax = left.subplots()
    ax.scatter(coords[:, 0], coords[:, 1], s=2, alpha=0)  # sets the limits
    for (x, y), thumb in zip(coords, thumbs, strict=True):
        box = AnnotationBbox(OffsetImage(thumb, zoom=0.5), (x, y), frameon=False)
        ax.add_artist(box)
    ax.set_title(f"{len(filenames)} embeddings, {method} to 2D")
    ax.set_xticks([])
    ax.set_yticks([])

    top, bottom = right.subfigures(2, 1)
    queries = np.linspace(0, len(filenames) - 1, args.queries).round().astype(int)
    grid = top.subplots(args.queries, n_cols, squeeze=False)
    top.suptitle("Nearest neighbours (cosine similarity)")
    for row, query in enumerate(queries):
        order = np.argsort(-similarity[query])
        order = [query] + [i for i in order if i != query][: args.neighbours]
        for col, i in enumerate(order):
            cell = grid[row, col]
            cell.imshow(thumbs[i])
            cell.set_title("query" if col == 0 else f"{similarity[query, i]:.3f}",
                           fontsize=8)  # fmt: skip
            cell.axis("off")

    pairs = most_similar_pairs(similarity, args.pairs)
    grid = bottom.subplots(2, max(len(pairs), 1), squeeze=False)
    bottom.suptitle("Most similar pairs: likely near-duplicates")
    for col, (i, j) in enumerate(pairs):
        for row, k in enumerate((i, j)):
            cell = grid[row, col]
            cell.imshow(thumbs[k])
            cell.set_title(filenames[k][-22:], fontsize=7)
            cell.axis("off")
        grid[1, col].text(0.5, -0.15, f"sim {similarity[i, j]:.3f}", fontsize=8,
                          ha="center", transform=grid[1, col].transAxes)  # fmt: skip
    fig.savefig(out, dpi=80)
    plt.close(fig)


def explore(embeddings: Path, data: Path, out: Path, args: argparse.Namespace) -> Path:
    """Writes the PNG for ``embeddings`` of the images under ``data``."""
    filenames, vectors = read_embeddings(embeddings)
    if len(filenames) < 2:
        raise SystemExit(f"'{embeddings}' has {len(filenames)} embedding(s); need 2.")
    if len(filenames) > args.max_points:
        keep = np.linspace(0, len(filenames) - 1, args.max_points).round().astype(int)
        filenames, vectors = [filenames[i] for i in keep], vectors[keep]
    args.queries = min(args.queries, len(filenames))
    args.neighbours = min(args.neighbours, len(filenames) - 1)
    draw(filenames, vectors, data, out, args)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", type=Path)
    parser.add_argument("--data", type=Path, required=True,
                        help="the directory the images were embedded from")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("explore.png"))
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--neighbours", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--max-points", type=int, default=2000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(
            "explore_embeddings needs matplotlib: pip install 'lightly-train[viz]'."
        ) from None
    if not args.embeddings.exists():
        raise SystemExit(f"Embeddings '{args.embeddings}' do not exist.")
    out = explore(args.embeddings, args.data, args.out, args)
    print(f"Wrote {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
