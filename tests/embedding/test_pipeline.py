"""End-to-end ``embed`` on a real local Ray, real image files and a real checkpoint."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import lightly_train
from lightly_train.checkpoint import create_checkpoint, load_checkpoint_entry
from lightly_train.data.decode import load_image
from lightly_train.embedding.embedder import Embedder
from lightly_train.embedding.writers import WRITERS
from lightly_train.errors import LightlyTrainError
from tests.embedding.test_writers import read_back
from tests.images import make_image_tree, write_image

SIZE = (24, 32)  # (height, width): not square, so a swapped axis shows


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("images")
    return root, make_image_tree(root)


def direct_embedding(
    checkpoint: Path, file: Path, size: tuple[int, int] = SIZE
) -> np.ndarray:
    """The embedding of one file computed outside Ray: decode, then forward."""
    image = load_image(file.read_bytes(), size)
    return Embedder(load_checkpoint_entry(checkpoint)).embed(image[None])[0]


def test_every_embedding_matches_its_file(
    ray_address: str, tmp_path: Path, checkpoint: Path, tree
) -> None:
    root, kinds = tree
    summary = lightly_train.embed(
        out=tmp_path / "e.pth", data=root, checkpoint=checkpoint, image_size=SIZE,
        batch_size=3,
    )  # fmt: skip
    good = sorted(name for name, kind in kinds.items() if kind == "good")
    corrupt = {name for name, kind in kinds.items() if kind == "corrupt"}
    data = torch.load(tmp_path / "e.pth", weights_only=True)
    assert data["filenames"] == good
    assert set(summary.failed) == corrupt
    assert summary.num_images == len(good)
    assert summary.dim == data["embeddings"].shape[1] == 512
    for name, vector in zip(data["filenames"], data["embeddings"].numpy(), strict=True):
        expected = direct_embedding(checkpoint, root / name)
        np.testing.assert_allclose(vector, expected, rtol=1e-4, atol=1e-4, err_msg=name)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["e.pth", "e.pth.failed.csv"]  # no temp files


def test_result_does_not_depend_on_parallelism(
    ray_address: str, tmp_path: Path, checkpoint: Path, tree
) -> None:
    root, _ = tree
    runs = []
    for i, (batch_size, num_workers) in enumerate([(1, 1), (7, 2)]):
        out = tmp_path / f"e{i}.pth"
        lightly_train.embed(
            out=out, data=root, checkpoint=checkpoint, image_size=SIZE,
            batch_size=batch_size, num_workers=num_workers,
        )  # fmt: skip
        runs.append(torch.load(out, weights_only=True))
    assert runs[0]["filenames"] == runs[1]["filenames"]
    torch.testing.assert_close(runs[0]["embeddings"], runs[1]["embeddings"])


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_format_holds_the_same_embeddings(
    ray_address: str, tmp_path: Path, tree, fmt: str
) -> None:
    root, kinds = tree
    ckpt = create_checkpoint(tmp_path / "c.ckpt", embed_dim=5, image_size=SIZE)
    out = tmp_path / "deeper" / "dir" / f"e.{fmt}"  # missing parents are created
    lightly_train.embed(out=out, data=root, checkpoint=ckpt, format=fmt, image_size=8)
    names, vectors = read_back(fmt, out)
    assert names == sorted(n for n, kind in kinds.items() if kind == "good")
    assert vectors.shape == (len(names), 5)
    first = direct_embedding(ckpt, root / names[0], (8, 8))
    np.testing.assert_allclose(vectors[0], first, rtol=1e-4, atol=1e-5)


def test_list_of_directories_and_files(
    ray_address: str, tmp_path: Path, checkpoint: Path
) -> None:
    write_image(tmp_path / "a" / "x.png", "RGB", size=(20, 20), seed=1)
    write_image(tmp_path / "b" / "sub" / "y.jpg", "RGB", size=(20, 20), seed=2)
    write_image(tmp_path / "c.png", "L", size=(20, 20), seed=3)
    lightly_train.embed(
        out=tmp_path / "e.pth",
        data=[tmp_path / "a", str(tmp_path / "b"), tmp_path / "c.png"],
        checkpoint=checkpoint,
        image_size=16,
    )
    data = torch.load(tmp_path / "e.pth", weights_only=True)
    assert data["filenames"] == ["c.png", "sub/y.jpg", "x.png"]


def test_existing_out_is_kept_without_overwrite(
    tmp_path: Path, checkpoint: Path, tree
) -> None:
    out = tmp_path / "e.pth"
    out.write_bytes(b"precious")
    with pytest.raises(LightlyTrainError, match="already exists.*overwrite=True"):
        lightly_train.embed(out=out, data=tree[0], checkpoint=checkpoint)
    assert out.read_bytes() == b"precious"


def test_overwrite_replaces_out(
    ray_address: str, tmp_path: Path, checkpoint: Path, tree
) -> None:
    out = tmp_path / "e.csv"
    out.write_bytes(b"old")
    lightly_train.embed(
        out=out, data=tree[0], checkpoint=checkpoint, format="csv", image_size=8,
        overwrite=True,
    )  # fmt: skip
    assert out.read_text().startswith("filename,embedding_0,")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": "does/not/exist"}, "does not exist"),
        ({"checkpoint": "missing.ckpt"}, "missing"),
        ({"format": "xml"}, "valid formats are csv, lightly_csv, parquet, torch"),
        ({"image_size": 0}, "expected int > 0"),
        ({"model": "torchvision/resnet18"}, "expected a torch.nn.Module"),
        ({"precision": "8-bit"}, "expected '32-true' or 'bf16-mixed' or '16-mixed'"),
    ],
)
def test_bad_arguments_fail_before_work(
    tmp_path: Path, checkpoint: Path, tree, kwargs: dict, match: str
) -> None:
    args = {"out": tmp_path / "e.pth", "data": tree[0], "checkpoint": checkpoint}
    with pytest.raises(LightlyTrainError, match=match):
        lightly_train.embed(**{**args, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_unknown_keyword_is_a_type_error(tmp_path: Path, checkpoint: Path) -> None:
    # Python rejects it by name; the CLI, which takes any key, suggests the closest.
    with pytest.raises(TypeError, match="batchsize"):
        lightly_train.embed(out="e", data=tmp_path, checkpoint=checkpoint, batchsize=4)


def test_out_is_a_directory(tmp_path: Path, checkpoint: Path, tree) -> None:
    with pytest.raises(LightlyTrainError, match="is a directory"):
        lightly_train.embed(out=tmp_path, data=tree[0], checkpoint=checkpoint)


def test_data_without_images_lists_extensions(tmp_path: Path, checkpoint: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(LightlyTrainError, match="No images found.*jpg.*webp"):
        lightly_train.embed(
            out=tmp_path / "e.pth", data=tmp_path, checkpoint=checkpoint
        )


def test_corrupt_checkpoint_fails_before_work(tmp_path: Path, tree) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(LightlyTrainError, match="could not be read"):
        lightly_train.embed(out=tmp_path / "e.pth", data=tree[0], checkpoint=bad)
    assert not (tmp_path / "e.pth").exists()


def test_16_mixed_needs_a_gpu(ray_address: str, tmp_path: Path, checkpoint, tree):
    with pytest.raises(LightlyTrainError, match="16-mixed' needs a GPU"):
        lightly_train.embed(
            out=tmp_path / "e.pth", data=tree[0], checkpoint=checkpoint,
            precision="16-mixed", accelerator="cpu",
        )  # fmt: skip
    assert not (tmp_path / "e.pth").exists()


def test_parquet_shards_hold_the_same_rows_as_torch(
    ray_address: str, tmp_path: Path, checkpoint: Path, tree
) -> None:
    root, kinds = tree
    args = {"data": root, "checkpoint": checkpoint, "image_size": 16}
    reference = lightly_train.embed(out=tmp_path / "e.pth", **args)
    summary = lightly_train.embed(
        out=tmp_path / "shards", format="parquet", shard_size=5, **args
    )
    files = sorted(p.name for p in (tmp_path / "shards").iterdir())
    parts = [f"part-{i:05d}.parquet" for i in range(5)]  # 22 rows / 5
    assert files == ["_manifest.json", *parts]
    manifest = json.loads((tmp_path / "shards" / "_manifest.json").read_text())
    assert list(manifest["parts"]) == parts
    assert manifest["num_rows"] == summary.num_images and manifest["dim"] == 512
    table = pq.read_table(tmp_path / "shards")  # the directory is one dataset
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 512)
    data = torch.load(reference.out, weights_only=True)
    assert table["filename"].to_pylist() == data["filenames"]
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(vectors, data["embeddings"].numpy(), atol=1e-5)
    assert set(summary.failed) == {n for n, k in kinds.items() if k == "corrupt"}
    assert summary.num_images == reference.num_images


def test_parquet_never_replaces_a_foreign_directory(
    tmp_path: Path, checkpoint: Path, tree
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(LightlyTrainError, match="did not write"):
        lightly_train.embed(
            out=out, data=tree[0], checkpoint=checkpoint, format="parquet",
            overwrite=True,
        )  # fmt: skip
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("kind", ["txt", "parquet"])
def test_manifest_lists_the_images(
    ray_address: str, tmp_path: Path, checkpoint: Path, kind: str
) -> None:
    write_image(tmp_path / "imgs" / "b.png", "RGB", size=(20, 20), seed=1)
    write_image(tmp_path / "imgs" / "a.jpg", "RGB", size=(20, 20), seed=2)
    write_image(tmp_path / "elsewhere.png", "RGB", size=(20, 20), seed=3)
    entries = ["imgs/b.png", str(tmp_path / "elsewhere.png"), "imgs/a.jpg"]
    manifest = tmp_path / f"list.{kind}"
    if kind == "txt":
        manifest.write_text("\n".join(entries) + "\n")
    else:
        pq.write_table(pa.table({"path": entries}), manifest)
    summary = lightly_train.embed(
        out=tmp_path / "e.pth", data=manifest, checkpoint=checkpoint, image_size=16
    )
    data = torch.load(summary.out, weights_only=True)
    assert data["filenames"] == sorted(entries)  # names as given, sorted
    first = direct_embedding(checkpoint, tmp_path / "imgs" / "a.jpg", (16, 16))
    index = data["filenames"].index("imgs/a.jpg")
    np.testing.assert_allclose(data["embeddings"][index], first, atol=1e-4)


NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize(
    "accelerator",
    [
        "cpu",
        pytest.param(
            "gpu",
            marks=[pytest.mark.gpu, pytest.mark.skipif(NO_GPU, reason="needs a GPU")],
        ),
    ],
)
def test_model_side_jpeg_decode_matches_decode_tasks(
    ray_address: str, tmp_path: Path, checkpoint: Path, tree, accelerator: str
) -> None:
    """jpeg_decode="model" (what GPUs use, on CPU with torchvision's CPU decoder):
    the same rows, the same failures, embeddings within the decoders' tolerance."""
    root, _ = tree
    args = {"data": root, "checkpoint": checkpoint, "image_size": SIZE,
            "accelerator": accelerator}  # fmt: skip
    tasks = lightly_train.embed(out=tmp_path / "t.pth", jpeg_decode="tasks", **args)
    model = lightly_train.embed(out=tmp_path / "m.pth", jpeg_decode="model", **args)
    assert model.failed == tasks.failed
    a = torch.load(tmp_path / "t.pth", weights_only=True)
    b = torch.load(tmp_path / "m.pth", weights_only=True)
    assert a["filenames"] == b["filenames"]
    cos = torch.nn.functional.cosine_similarity(a["embeddings"], b["embeddings"])
    assert cos.min() > 0.99
