"""Listing speed: ``list_image_files`` on a tree of empty ``.jpg`` files.

    python benchmarks/list_files.py [--num-files 1000000] [--dir DIR]

Writes ``--num-files`` empty files into 1,000 directories (kept in ``--dir`` for a
rerun), then lists and sorts them as ``embed`` and ``train`` do, and prints the
seconds against the 30 s limit of issue 7 (for 1M files).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lightly_train.data.files import list_image_files

LIMIT_S = 30.0


def make_tree(root: Path, n: int, dirs: int = 1000) -> None:
    marker = root / f".made-{n}"
    if marker.exists():
        return
    for d in range(dirs):
        (root / f"d{d:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        os.close(os.open(root / f"d{i % dirs:04d}" / f"{i:08d}.jpg", os.O_CREAT, 0o644))
    marker.touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-files", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="list-bench-"))
    make_tree(root, args.num_files)
    os.sync()
    start = time.perf_counter()
    files = list_image_files(str(root))
    seconds = time.perf_counter() - start
    assert len(files) == args.num_files, len(files)
    print(f"listed and sorted {len(files)} files in {seconds:.1f} s; limit "
          f"{LIMIT_S:.0f} s for 1M: {seconds / LIMIT_S:.2f} x limit")  # fmt: skip


if __name__ == "__main__":
    main()
