from pathlib import Path

import numpy as np
import pytest
import torch

import lightly_train
from lightly_train.checkpoint import create_checkpoint, load_checkpoint_entry
from lightly_train.embedding.embedder import Embedder, fold_batch_norms


def images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 24, 3), dtype=np.uint8)


def reference(checkpoint: Path, batch: np.ndarray) -> np.ndarray:
    """Embeds with the public model loader and explicit ImageNet normalisation."""
    model = lightly_train.load_embedding_model(checkpoint)
    x = torch.tensor(batch, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((x - mean) / std).numpy()


def test_embedder_matches_reference_and_zeroes_failed_rows(checkpoint: Path) -> None:
    embedder = Embedder(load_checkpoint_entry(checkpoint))
    batch = images(4)
    errors = np.array(["", "OSError: truncated", "", ""])
    out = embedder({"idx": np.arange(10, 14), "image": batch, "error": errors})
    assert out["embedding"].dtype == np.float32
    assert out["embedding"].shape == (4, 512)
    np.testing.assert_array_equal(out["idx"], np.arange(10, 14))
    np.testing.assert_array_equal(out["error"], errors)
    assert not out["embedding"][1].any()
    ok = [0, 2, 3]
    np.testing.assert_allclose(
        out["embedding"][ok], reference(checkpoint, batch[ok]), rtol=1e-4, atol=1e-5
    )


def test_embedder_all_rows_failed(checkpoint: Path) -> None:
    embedder = Embedder(load_checkpoint_entry(checkpoint))
    errors = np.array(["bad", "bad"])
    out = embedder({"idx": np.arange(2), "image": images(2), "error": errors})
    assert out["embedding"].shape == (2, 512)
    assert not out["embedding"].any()


def test_embedder_honours_embed_dim(tmp_path: Path) -> None:
    path = create_checkpoint(tmp_path / "c.ckpt", embed_dim=16)
    out = Embedder(load_checkpoint_entry(path)).embed(images(3))
    assert out.shape == (3, 16)


def test_bf16_autocast_is_close_to_fp32(checkpoint: Path) -> None:
    entry = load_checkpoint_entry(checkpoint)
    batch = images(2)
    full = Embedder(entry).embed(batch)
    half = Embedder(entry, precision="bf16-mixed").embed(batch)
    assert half.dtype == np.float32
    assert not np.array_equal(full, half)  # autocast really ran in bf16
    cos = (
        (full * half).sum(1)
        / np.linalg.norm(full, axis=1)
        / np.linalg.norm(half, axis=1)
    )
    assert cos.min() > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_embedder_on_gpu(checkpoint: Path, precision: str) -> None:
    entry = load_checkpoint_entry(checkpoint)
    batch = images(4)
    cpu = Embedder(entry).embed(batch)
    gpu = Embedder(entry, device="cuda", precision=precision).embed(batch)
    # 32-true runs convolutions and matmuls in TF32 on a GPU (10-bit mantissa):
    # measured on an H200, up to 2.7e-3 off the CPU's float32.
    tol = 1e-2 if precision == "32-true" else 5e-2
    np.testing.assert_allclose(gpu, cpu, rtol=tol, atol=tol)


def test_channels_last_equals_contiguous(checkpoint: Path) -> None:
    """The actor runs the model and its input channels_last; the embeddings equal
    those of the plain contiguous (NCHW) model within float32 tolerance."""
    entry = load_checkpoint_entry(checkpoint)
    batch = images(4)
    embedder = Embedder(entry)
    channels_last = embedder.embed(batch)
    conv = embedder.model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    np.testing.assert_allclose(
        channels_last, reference(checkpoint, batch), rtol=1e-4, atol=1e-5
    )


def test_padded_batches_give_an_image_the_same_bits_in_any_batch(
    checkpoint: Path,
) -> None:
    batch = images(8)
    errors = np.array(["", "OSError: truncated"] + [""] * 6)
    padded = Embedder(load_checkpoint_entry(checkpoint), num_threads=1, batch_size=8)
    full = padded.embed(batch)
    assert np.array_equal(padded.embed(batch[:1]), full[:1])  # one image: padded
    with_failure = padded({"idx": np.arange(8), "image": batch, "error": errors})
    assert np.array_equal(with_failure["embedding"][2:], full[2:])  # 7 rows: padded
    # Without padding, a lone image takes another kernel on CPU: not the same bits.
    plain = Embedder(load_checkpoint_entry(checkpoint), num_threads=1)
    np.testing.assert_allclose(plain.embed(batch[:1]), full[:1], atol=1e-5)


class Branchy(torch.nn.Module):
    """A backbone torch.fx cannot trace: control flow on a tensor's value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.bn = torch.nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


def test_batch_norms_are_folded_into_convolutions(checkpoint: Path) -> None:
    embedder = Embedder(load_checkpoint_entry(checkpoint))
    bns = [m for m in embedder.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bns  # the actor's model runs folded
    model = lightly_train.load_embedding_model(checkpoint).backbone
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x), model(x), rtol=1e-4, atol=1e-5)
    branchy = Branchy().eval()
    assert fold_batch_norms(branchy) is branchy  # untraceable: left as it is
