from pathlib import Path

import pytest
import torch

import lightly_train
from lightly_train.checkpoint import (
    FORMAT_VERSION,
    KEY,
    create_checkpoint,
    load_checkpoint_entry,
)
from lightly_train.errors import LightlyTrainError


def test_checkpoint_loads_with_weights_only(checkpoint: Path) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    entry = ckpt[KEY]
    assert entry["version"] == FORMAT_VERSION
    assert entry["model"] == "torchvision/resnet18"
    assert entry["embed_dim"] is None
    assert entry["image_size"] == [32, 32]
    assert entry["normalize"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert all(
        isinstance(v, torch.Tensor)
        for v in entry["embedding_model_state_dict"].values()
    )


def test_load_embedding_model_restores_weights(tmp_path: Path) -> None:
    path = create_checkpoint(tmp_path / "a.ckpt", embed_dim=8, seed=1)
    model = lightly_train.load_embedding_model(path)
    saved = torch.load(path, weights_only=True)[KEY]["embedding_model_state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not model.training
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 8)


def test_different_seeds_give_different_models(tmp_path: Path) -> None:
    a = lightly_train.load_embedding_model(create_checkpoint(tmp_path / "a", seed=0))
    b = lightly_train.load_embedding_model(create_checkpoint(tmp_path / "b", seed=1))
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(a(x), b(x))


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(LightlyTrainError, match="missing.*last.ckpt"):
        load_checkpoint_entry(tmp_path / "nope.ckpt")


@pytest.mark.parametrize("content", [b"", b"garbage" * 10])
def test_corrupt_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(LightlyTrainError, match="could not be read"):
        load_checkpoint_entry(path)


def test_truncated_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    path = tmp_path / "trunc.ckpt"
    path.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(LightlyTrainError, match="could not be read"):
        load_checkpoint_entry(path)


def test_not_a_lightly_train_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(LightlyTrainError, match="not a lightly-train checkpoint"):
        load_checkpoint_entry(path)


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    """As LightlyTrain 0.18's checkpoints pickle their model: one line naming the
    class, never unpickled."""
    path = tmp_path / "module.pt"
    torch.save({KEY: {"models": {"model": torch.nn.Linear(2, 2)}}}, path)
    with pytest.raises(LightlyTrainError) as ex:
        load_checkpoint_entry(path)
    assert str(ex.value) == (
        f"Checkpoint '{path}' holds pickled Python objects "
        "(torch.nn.modules.linear.Linear), and lightly-train never runs code from a "
        "checkpoint (it loads them with weights_only=True). Use a checkpoint written "
        "by `lightly-train train` (LightlyTrain 0.x checkpoints are not)."
    )


@pytest.mark.parametrize(
    ("model", "model_args", "embed_dim", "size"),
    [
        ("torchvision/resnet18", {"small_input": True}, 16, 32),
        # Computes its stage widths with tensor ops (no meta device build).
        ("torchvision/regnet_y_400mf", None, None, 32),
        # Buffers outside its state_dict (attention_bias_idxs): built for real.
        ("timm/levit_128s", None, None, 224),
    ],
)
def test_model_from_a_checkpoint_equals_a_plain_build(
    tmp_path: Path, model: str, model_args: dict | None, embed_dim: int | None,
    size: int,
) -> None:  # fmt: skip
    """The embedding model is built without its random init and takes the
    checkpoint's tensors: it must equal a model built and loaded plainly."""
    from lightly_train.checkpoint import embedding_model_from_entry
    from lightly_train.models import build_embedding_model

    path = create_checkpoint(tmp_path / "c.ckpt", model, model_args, embed_dim,
                             image_size=(size, size), seed=3)  # fmt: skip
    entry = load_checkpoint_entry(path)
    built = embedding_model_from_entry(entry)
    plain = build_embedding_model(model, model_args, embed_dim)
    plain.load_state_dict(entry["embedding_model_state_dict"])
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(built(x), plain.eval()(x))
