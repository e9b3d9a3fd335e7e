"""Remote storage against a real S3-compatible server (moto) on loopback."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import lightly_train
from lightly_train.data import storage
from lightly_train.errors import LightlyTrainError
from tests.images import write_image, write_not_an_image


def upload_tree(root: Path, uri: str) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            storage.write_bytes(f"{uri}/{path.relative_to(root).as_posix()}",
                                path.read_bytes())  # fmt: skip


@pytest.fixture(scope="module")
def remote(s3_bucket: str, tmp_path_factory, checkpoint: Path) -> dict[str, str]:
    local = tmp_path_factory.mktemp("s3src")
    for i in range(6):
        write_image(local / "imgs" / ("sub" if i % 2 else "") / f"{i}.png", "RGB",
                    size=(24, 24), seed=i)  # fmt: skip
    write_not_an_image(local / "imgs" / "bad.jpg")
    # A URL parser would take these for a fragment and a query.
    write_image(local / "imgs" / "odd #1?, name.png", "RGB", size=(24, 24), seed=9)
    (local / "imgs" / "notes.txt").write_text("not an image")
    upload_tree(local / "imgs", f"{s3_bucket}/data")
    storage.write_bytes(f"{s3_bucket}/models/last.ckpt", checkpoint.read_bytes())
    return {
        "local": str(local / "imgs"),
        "data": f"{s3_bucket}/data",
        "checkpoint": f"{s3_bucket}/models/last.ckpt",
        "bucket": s3_bucket,
    }


def test_embed_from_s3_to_s3_matches_local(ray_address: str, remote, tmp_path):
    out = f"{remote['bucket']}/out/emb.pth"
    summary = lightly_train.embed(
        out=out, data=remote["data"], checkpoint=remote["checkpoint"], image_size=16
    )
    assert summary.out == out and list(summary.failed) == ["bad.jpg"]
    # The failure report is uploaded beside the output.
    assert summary.failed_report == f"{out}.failed.csv"
    report = storage.read_bytes(summary.failed_report).decode().splitlines()
    assert report[0] == "filename,error" and report[1].startswith("bad.jpg,")
    assert len(report) == 2
    local = tmp_path / "emb.pth"
    local.write_bytes(storage.read_bytes(out))
    got = torch.load(local, weights_only=True)
    assert got["filenames"] == ["0.png", "2.png", "4.png", "odd #1?, name.png",
                                "sub/1.png", "sub/3.png", "sub/5.png"]  # fmt: skip

    reference = lightly_train.embed(
        out=tmp_path / "ref.pth", data=remote["local"],
        checkpoint=remote["checkpoint"], image_size=16,
    )  # fmt: skip
    ref = torch.load(reference.out, weights_only=True)
    assert ref["filenames"] == got["filenames"]
    torch.testing.assert_close(ref["embeddings"], got["embeddings"])

    with pytest.raises(LightlyTrainError, match="already exists"):
        lightly_train.embed(out=out, data=remote["data"],
                            checkpoint=remote["checkpoint"])  # fmt: skip


def test_parquet_shards_to_s3(ray_address: str, remote) -> None:
    out = f"{remote['bucket']}/out/shards"
    summary = lightly_train.embed(
        out=out, data=remote["data"], checkpoint=remote["checkpoint"],
        format="parquet", shard_size=4, image_size=16,
    )  # fmt: skip
    assert summary.num_images == 7
    assert sorted(storage.list_files(out)) == ["_manifest.json", "part-00000.parquet",
                                               "part-00001.parquet"]  # fmt: skip
    manifest = json.loads(storage.read_bytes(f"{out}/_manifest.json"))
    assert manifest == {"parts": {"part-00000.parquet": 3, "part-00001.parquet": 4},
                        "num_rows": 7, "dim": 512}  # fmt: skip
    fs, path = storage.resolve(out)
    table = pq.read_table(path, filesystem=fs)
    assert table["filename"].to_pylist()[:2] == ["0.png", "2.png"]
    assert np.stack(table["embedding"].to_numpy(zero_copy_only=False)).shape == (7, 512)
    assert "odd #1?, name.png" in table["filename"].to_pylist()
    # No temporary prefix is left beside the output.
    assert all(".tmp-" not in name for name in storage.list_files(remote["bucket"]))


def test_missing_remote_inputs_are_clear(remote, tmp_path) -> None:
    with pytest.raises(LightlyTrainError, match="does not exist"):
        lightly_train.embed(out=tmp_path / "e.pth", data=f"{remote['bucket']}/nope",
                            checkpoint=remote["checkpoint"])  # fmt: skip
    with pytest.raises(LightlyTrainError, match="missing"):
        lightly_train.embed(out=tmp_path / "e.pth", data=remote["data"],
                            checkpoint=f"{remote['bucket']}/nope.ckpt")  # fmt: skip


def test_train_reads_from_s3(ray_address: str, remote, tmp_path) -> None:
    summary = lightly_train.train(
        out=tmp_path / "run", data=remote["data"], model="torchvision/resnet18",
        epochs=1, batch_size=2, transform_args={"image_size": 32},
    )  # fmt: skip
    ckpt = torch.load(summary.checkpoint, weights_only=True)
    assert ckpt["global_step"] == 4  # 8 files (7 readable + 1 skipped), batch 2


def test_train_out_must_not_be_a_uri(remote) -> None:
    with pytest.raises(LightlyTrainError, match="is a URI"):
        lightly_train.train(out=f"{remote['bucket']}/run", data=remote["data"],
                            model="torchvision/resnet18")  # fmt: skip


def test_export_to_s3(remote, tmp_path) -> None:
    out = f"{remote['bucket']}/exports/model #1?.pt"
    assert lightly_train.export(out=out, checkpoint=remote["checkpoint"]) == out
    local = tmp_path / "model.pt"
    local.write_bytes(storage.read_bytes(out))
    assert "conv1.weight" in torch.load(local, weights_only=True)
    assert not list(Path.cwd().glob("s3:*"))  # no local file named after the URI


def test_interrupted_parquet_embed_to_s3_resumes_from_its_fragments_there(
    ray_address: str, s3_bucket: str, tmp_path: Path
) -> None:
    """The work prefix lies beside ``out`` on S3, where every node's tasks write
    fragments; the CLI is stopped past 30% and resumed."""
    import signal
    import subprocess

    from lightly_train.checkpoint import create_checkpoint
    from tests.embedding.test_resume import EXE, environ, interrupt_past

    local = tmp_path / "imgs"
    for i in range(400):
        write_image(local / f"{i:03d}.png", "RGB", size=(40, 30), seed=i)
    upload_tree(local, f"{s3_bucket}/many")
    ckpt = create_checkpoint(tmp_path / "c.ckpt", model="torchvision/resnet18",
                             image_size=(64, 64))  # fmt: skip
    args = {"format": "parquet", "image_size": 64, "batch_size": 8, "shard_size": 150}
    out, work = f"{s3_bucket}/res/shards", f"{s3_bucket}/res/.shards.embed-work"
    cmd = [EXE, "embed", f"out={out}", f"data={s3_bucket}/many", f"checkpoint={ckpt}",
           *(f"{k}={v}" for k, v in args.items())]  # fmt: skip
    code, output = interrupt_past(0.3, cmd, signal.SIGINT)
    assert code == 130, output
    assert work in output and "resume_interrupted=True" in output
    saved = [n for n in storage.list_files(work) if n.startswith("fragments/")]
    assert saved and storage.file_type(out) == "missing"

    resumed = subprocess.run([*cmd, "resume_interrupted=true"], capture_output=True,
                             text=True, env=environ(), timeout=400)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming: " in resumed.stderr
    assert storage.file_type(work) == "missing"
    reference = lightly_train.embed(out=tmp_path / "ref", data=local, checkpoint=ckpt,
                                    **args)  # fmt: skip
    names = sorted(p.name for p in Path(reference.out).iterdir())
    assert sorted(storage.list_files(out)) == names
    for name in names:  # the same bytes
        got = storage.read_bytes(f"{out}/{name}")
        assert got == (Path(reference.out) / name).read_bytes(), name
