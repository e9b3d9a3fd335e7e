"""``export``: the exported files load into plain torchvision / lightly-train models."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

import lightly_train
from lightly_train.checkpoint import (
    checkpoint_entry,
    create_checkpoint,
    load_embedding_model,
    save_checkpoint,
)
from lightly_train.cli import cli
from lightly_train.errors import LightlyTrainError
from lightly_train.exporting import ExportConfig, export
from lightly_train.models import EmbeddingModel, build_embedding_model

EXE = str(Path(sys.executable).with_name("lightly-train"))

# (model, embed_dim, classifier module that build_backbone replaces by Identity)
CASES = [
    ("torchvision/resnet18", None, "fc"),
    ("torchvision/mobilenet_v3_small", 8, "classifier"),
]


@dataclass(frozen=True)
class Case:
    ckpt: Path
    model: str
    embed_dim: int | None
    classifier: str
    features: torch.Tensor  # (N, C) backbone features of the checkpoint's model
    embeddings: torch.Tensor  # (N, D) what embed computes

    @property
    def name(self) -> str:
        return self.model.split("/")[1]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request, tmp_path_factory) -> Case:
    model, embed_dim, classifier = request.param
    path = tmp_path_factory.mktemp("ckpt") / "c.ckpt"
    create_checkpoint(path, model=model, embed_dim=embed_dim, seed=1)
    net = load_embedding_model(path)
    with torch.no_grad():
        features = net.backbone(images())
        embeddings = net(images())
    return Case(path, model, embed_dim, classifier, features, embeddings)


@pytest.fixture(scope="module")
def resnet_ckpt(tmp_path_factory) -> Path:
    return create_checkpoint(tmp_path_factory.mktemp("r") / "c.ckpt", seed=2)


def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def features(net: nn.Module, classifier: str) -> torch.Tensor:
    """Pooled features of a plain torchvision model, its classifier removed."""
    setattr(net, classifier, nn.Identity())
    with torch.no_grad():
        return net.eval()(images())


def test_model_state_dict_loads_strictly_into_torchvision(case, tmp_path) -> None:
    out = export(out=tmp_path / "model.pt", checkpoint=case.ckpt)
    assert out == tmp_path / "model.pt"
    net = torchvision.models.get_model(case.name, weights=None)
    # Strict: the full torchvision model, its (untrained) classifier included.
    net.load_state_dict(torch.load(out, weights_only=True))
    torch.testing.assert_close(features(net, case.classifier), case.features)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp


def test_model_torch_model_is_the_plain_torchvision_class(case, tmp_path) -> None:
    out = export(out=tmp_path / "m.pt", checkpoint=case.ckpt, format="torch_model")
    net = torch.load(out, weights_only=False)
    assert type(net).__module__.startswith("torchvision.models.")
    assert not hasattr(net, "feature_dim")
    torch.testing.assert_close(features(net, case.classifier), case.features)


def test_embedding_model_state_dict_honours_embed_dim(case, tmp_path) -> None:
    out = tmp_path / "e.pt"
    export(out=out, checkpoint=case.ckpt, part="embedding_model")
    net = build_embedding_model(case.model, embed_dim=case.embed_dim)
    net.load_state_dict(torch.load(out, weights_only=True))
    with torch.no_grad():
        embeddings = net.eval()(images())
    torch.testing.assert_close(embeddings, case.embeddings)
    assert embeddings.shape[1] == (case.embed_dim or 512)


def test_embedding_model_torch_model(case, tmp_path) -> None:
    out = tmp_path / "e.pt"
    export(out=out, checkpoint=case.ckpt, part="embedding_model", format="torch_model")
    net = torch.load(out, weights_only=False)
    assert isinstance(net, EmbeddingModel) and not net.training
    with torch.no_grad():
        torch.testing.assert_close(net(images()), case.embeddings)


def test_public_api_creates_parents_and_overwrites(resnet_ckpt, tmp_path) -> None:
    out = tmp_path / "a" / "b" / "model.pt"
    # The module is lightly_train.exporting, so importing it cannot shadow the
    # public function on the package.
    assert lightly_train.export is export
    lightly_train.export(out=out, checkpoint=resnet_ckpt)
    out.write_bytes(b"old")
    lightly_train.export(out=str(out), checkpoint=str(resnet_ckpt), overwrite=True)
    assert "fc.weight" in torch.load(out, weights_only=True)


def test_existing_out_is_kept_byte_for_byte(tmp_path) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"old model")
    # The checkpoint is missing too: the out check comes first, before any work.
    with pytest.raises(LightlyTrainError, match="already exists. Pass overwrite=True"):
        export(out=out, checkpoint=tmp_path / "missing.ckpt")
    assert out.read_bytes() == b"old model"
    assert list(tmp_path.iterdir()) == [out]


def test_out_is_a_directory(resnet_ckpt, tmp_path) -> None:
    with pytest.raises(LightlyTrainError, match="is a directory. Pass a file path"):
        export(out=tmp_path, checkpoint=resnet_ckpt, overwrite=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is missing"),
        (b"not a torch file", "could not be read"),
        ({"state_dict": {}}, "is not a lightly-train checkpoint"),
    ],
)
def test_bad_checkpoint(tmp_path: Path, content, message: str) -> None:
    ckpt = tmp_path / "c.ckpt"
    if isinstance(content, bytes):
        ckpt.write_bytes(content)
    elif content is not None:
        torch.save(content, ckpt)
    with pytest.raises(LightlyTrainError, match=message):
        export(out=tmp_path / "out" / "model.pt", checkpoint=ckpt)
    assert not (tmp_path / "out" / "model.pt").exists()


def test_model_part_checks_the_backbone_weights(tmp_path) -> None:
    entry = checkpoint_entry(build_embedding_model("torchvision/resnet18"), "x")
    del entry["embedding_model_state_dict"]["backbone.layer1.0.conv1.weight"]
    entry["model"] = "torchvision/resnet18"
    save_checkpoint(tmp_path / "c.ckpt", entry)
    with pytest.raises(RuntimeError, match=r"missing \['layer1.0.conv1.weight'\]"):
        export(out=tmp_path / "m.pt", checkpoint=tmp_path / "c.ckpt")
    entry["model"] = "custom/MyNet"
    save_checkpoint(tmp_path / "c.ckpt", entry)
    with pytest.raises(LightlyTrainError, match="Use part='embedding_model'"):
        export(out=tmp_path / "m.pt", checkpoint=tmp_path / "c.ckpt")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"part": "head"}, "for 'part': expected 'model' or 'embedding_model'"),
        ({"format": "onnx"}, "expected 'torch_state_dict' or 'torch_model'"),
    ],
)
def test_bad_part_or_format_names_the_valid_ones(tmp_path, kwargs, message) -> None:
    with pytest.raises(LightlyTrainError, match=message):
        export(out=tmp_path / "m.pt", checkpoint=tmp_path / "c.ckpt", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_help_lists_every_argument() -> None:
    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0
    for name in ExportConfig.model_fields:
        assert f"  {name}  (" in result.output


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def test_cli_exports_embedding_model(resnet_ckpt, tmp_path) -> None:
    out = tmp_path / "sub" / "emb.pt"
    result = run_cli(
        "export", f"out={out}", f"checkpoint={resnet_ckpt}", "part=embedding_model"
    )
    assert result.returncode == 0, result.stderr
    assert f"as torch_state_dict to '{out}'." in result.stderr.splitlines()[-1]
    net = build_embedding_model("torchvision/resnet18")
    net.load_state_dict(torch.load(out, weights_only=True))


def test_cli_error_exits_2_without_traceback(resnet_ckpt, tmp_path) -> None:
    out = tmp_path / "m.pt"
    result = run_cli("export", f"out={out}", f"checkpoint={resnet_ckpt}", "format=x")
    assert result.returncode == 2
    assert "expected 'torch_state_dict' or 'torch_model'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_timm_model_part_loads_strictly_into_timm(tmp_path) -> None:
    import timm  # a dev dependency

    ckpt = create_checkpoint(tmp_path / "c.ckpt", model="timm/resnet18")
    export(out=tmp_path / "m.pt", checkpoint=ckpt)
    net = timm.create_model("resnet18", pretrained=False)
    net.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    net.reset_classifier(0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = lightly_train.load_embedding_model(ckpt).backbone(x)
        torch.testing.assert_close(net.eval()(x), expected)
