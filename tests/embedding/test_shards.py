"""The sharded parquet writer's two task functions, called directly without Ray."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lightly_train.embedding import shards
from lightly_train.embedding.shards import merge_shard, scan_fragments, write_fragments

NAMES = pa.array([f"img{i:03d}.png" for i in range(23)])


def block(idx: list[int], failed: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    idx_ = np.array(idx, dtype=np.int64)
    return {
        "idx": idx_,
        "embedding": np.stack([np.full(4, i, np.float32) for i in idx_]),
        "error": np.array(["OSError: bad" if i in failed else "" for i in idx_]),
    }


def test_blocks_in_any_order_become_ordered_shards_without_gaps(tmp_path: Path):
    work, out = tmp_path / "work", tmp_path / "out"
    # Blocks as the model stage emits them: unordered rows, straddling shards.
    blocks = [block([7, 3, 12, 4]), block([0, 1, 2, 22, 21]),
              block([5, 6, 8, 9, 10, 11], failed=(8, 9, 10, 11)),
              block([13, 14, 15, 16, 17, 18, 19, 20], failed=(15,))]  # fmt: skip
    summaries = pa.concat_tables(
        [write_fragments(b, NAMES, str(work), shard_size=5) for b in blocks]
    )
    rows: dict[int, int] = {}
    for shard, n in zip(summaries["shard"].to_pylist(), summaries["rows"].to_pylist(),
                        strict=True):  # fmt: skip
        rows[shard] = rows.get(shard, 0) + n
    assert rows == {0: 5, 1: 5, 2: 5, 3: 5, 4: 3}  # every row counted once
    failed = sorted(
        zip(pa.compute.list_flatten(summaries["failed_idx"]).to_pylist(),
            pa.compute.list_flatten(summaries["failed_error"]).to_pylist(),
            strict=True)
    )  # fmt: skip
    assert failed == [(i, "OSError: bad") for i in (8, 9, 10, 11, 15)]
    # Shard 1 (rows 5-9) keeps 5, 6, 7; shard 2 (10-14) keeps 12-14.
    parts = [merge_shard(str(work), str(out), s, k) for k, s in enumerate(range(5))]
    assert parts == [5, 3, 3, 4, 3]
    table = pq.read_table(out, columns=None)  # the directory is one dataset
    kept = [i for i in range(23) if i not in (8, 9, 10, 11, 15)]
    assert table["filename"].to_pylist() == [f"img{i:03d}.png" for i in kept]
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors[:, 0], np.array(kept, np.float32))
    names = sorted(p.name for p in out.glob("part-*.parquet"))
    assert names == [f"part-{k:05d}.parquet" for k in range(5)]
    # What a resumed run reads back: every row done, and the failures.
    done, failures = scan_fragments(str(work), 23)
    assert done.all()
    assert failures == {i: "OSError: bad" for i in (8, 9, 10, 11, 15)}


def test_a_block_joining_rows_of_several_decode_blocks_merges_in_row_order(
    tmp_path: Path,
) -> None:
    # The model stage batches decode blocks in arrival order: 0-1 with 6-7.
    for rows in ([0, 1, 6, 7], [2, 3], [4, 5, 8, 9]):
        write_fragments(block(rows), NAMES, str(tmp_path), shard_size=10)
    assert merge_shard(str(tmp_path), str(tmp_path), 0, 0) == 10
    table = pq.read_table(tmp_path / "part-00000.parquet")
    assert table["filename"].to_pylist() == [f"img{i:03d}.png" for i in range(10)]


def test_parts_have_the_same_bytes_however_their_rows_were_batched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 4 * 4 * 1024)  # 1024-row groups
    names = pa.array([f"img{i:05d}.png" for i in range(2500)])
    parts = []
    one_block = [range(0, 2500)]
    three = [range(0, 700), range(1800, 2500), range(700, 1800)]
    for k, batches in enumerate([one_block, three]):
        work = tmp_path / f"work{k}"
        for rows in batches:
            write_fragments(block(list(rows)), names, str(work), shard_size=5000)
        merge_shard(str(work), str(tmp_path / f"out{k}"), 0, 0)
        parts.append((tmp_path / f"out{k}" / "part-00000.parquet").read_bytes())
    assert parts[0] == parts[1]
    meta = pq.ParquetFile(tmp_path / "out0" / "part-00000.parquet").metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [
        1024,
        1024,
        452,
    ]


def test_parts_have_small_row_groups_without_dictionaries(tmp_path: Path) -> None:
    # A merge holds about ten times a row group; 8 MB of 512-d floats is 4096 rows.
    # Unique filenames and float vectors gain nothing from a dictionary.
    names = pa.array([f"img{i:05d}.png" for i in range(9000)])
    rows = block(list(range(9000)))
    rows["embedding"] = np.repeat(rows["embedding"], 128, axis=1)  # 512-d
    write_fragments(rows, names, str(tmp_path / "work"), shard_size=10_000)
    merge_shard(str(tmp_path / "work"), str(tmp_path / "out"), 0, 0)
    files = [tmp_path / "out" / "part-00000.parquet",
             *(tmp_path / "work").rglob("*.parquet")]  # fmt: skip
    assert len(files) == 2
    meta = pq.ParquetFile(files[0]).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sizes == [4096, 4096, 808]
    for path in files:
        meta = pq.ParquetFile(path).metadata
        encodings = {e for g in range(meta.num_row_groups)
                     for c in range(meta.num_columns)
                     for e in meta.row_group(g).column(c).encodings}  # fmt: skip
        assert not any("DICTIONARY" in e for e in encodings), (path, encodings)


def test_a_raising_run_writes_no_fragment_of_a_failed_row(tmp_path: Path) -> None:
    write_fragments(block([0, 1, 2], failed=(1,)), NAMES, str(tmp_path), 10, "raise")
    write_fragments(block([3, 4]), NAMES, str(tmp_path), 10, "raise")
    done, failures = scan_fragments(str(tmp_path), 23)
    assert np.flatnonzero(done).tolist() == [3, 4] and failures == {}
