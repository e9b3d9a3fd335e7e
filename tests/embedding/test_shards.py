"""The sharded parquet writer's two task functions, called directly without Ray."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lightly_train.embedding.shards import FRAGMENTS, merge_shard, write_fragments

NAMES = pa.array([f"img{i:03d}.png" for i in range(23)])


def block(idx: list[int], failed: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    idx_ = np.array(idx, dtype=np.int64)
    return {
        "idx": idx_,
        "embedding": np.stack([np.full(4, i, np.float32) for i in idx_]),
        "error": np.array(["OSError: bad" if i in failed else "" for i in idx_]),
    }


def test_blocks_in_any_order_become_ordered_shards_without_gaps(tmp_path: Path):
    # Blocks as the model stage emits them: unordered rows, straddling shards.
    blocks = [block([7, 3, 12, 4]), block([0, 1, 2, 22, 21]),
              block([5, 6, 8, 9, 10, 11], failed=(8, 9, 10, 11)),
              block([13, 14, 15, 16, 17, 18, 19, 20], failed=(15,))]  # fmt: skip
    summaries = pa.concat_tables(
        [write_fragments(b, NAMES, str(tmp_path), shard_size=5) for b in blocks]
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
    parts = [merge_shard(str(tmp_path), s, k) for k, s in enumerate(range(5))]
    assert parts == [5, 3, 3, 4, 3]
    assert not any((tmp_path / FRAGMENTS).glob("*/*.parquet"))
    table = pq.read_table(tmp_path, columns=None)  # the directory is one dataset
    kept = [i for i in range(23) if i not in (8, 9, 10, 11, 15)]
    assert table["filename"].to_pylist() == [f"img{i:03d}.png" for i in kept]
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors[:, 0], np.array(kept, np.float32))
    names = sorted(p.name for p in tmp_path.glob("part-*.parquet"))
    assert names == [f"part-{k:05d}.parquet" for k in range(5)]


def test_a_block_joining_rows_of_several_decode_blocks_merges_in_row_order(
    tmp_path: Path,
) -> None:
    # The model stage batches decode blocks in arrival order: 0-1 with 6-7.
    for rows in ([0, 1, 6, 7], [2, 3], [4, 5, 8, 9]):
        write_fragments(block(rows), NAMES, str(tmp_path), shard_size=10)
    assert merge_shard(str(tmp_path), 0, 0) == 10
    table = pq.read_table(tmp_path / "part-00000.parquet")
    assert table["filename"].to_pylist() == [f"img{i:03d}.png" for i in range(10)]
