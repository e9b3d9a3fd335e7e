"""Bad inputs as one corpus, embedded end to end: each bad file is reported by name
and every good image is embedded as the decoder alone would embed it."""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lightly_train
from lightly_train.checkpoint import load_checkpoint_entry
from lightly_train.data.decode import load_image
from lightly_train.embedding.embedder import Embedder
from tests.images import (
    P_TRANSPARENT,
    write_exif_rotated_jpeg,
    write_image,
    write_not_an_image,
    write_truncated_jpeg,
)

SIZE = 32
# Names a file system allows and a careless writer mangles.
ODD_NAMES = ["with space.png", "comma,name.png", 'quote"s.png', "new\nline.png",
             "ñon-ascii é.png", "hash#1.png", "what?.png"]  # fmt: skip


def png_bomb(path: Path, side: int = 20_000) -> None:
    """A tiny PNG whose header claims side x side pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = b"\0" + b"\0" * side
    data = zlib.compress(row * 16)  # a few rows; the header is what counts
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))  # fmt: skip


def write_frames(path: Path, frames: int = 3) -> None:
    """A multi-frame GIF or TIFF; each frame a different solid colour."""
    images = [Image.new("RGB", (24, 16), (80 * i, 40, 255 - 80 * i))
              for i in range(frames)]  # fmt: skip
    images[0].save(path, save_all=True, append_images=images[1:])


def build_corpus(root: Path) -> dict[str, str]:
    """Writes the corpus; ``{filename: "good" | "bad"}`` of what embed must list."""
    kinds: dict[str, str] = {}
    root.mkdir(parents=True)
    (root / "zero_bytes.jpg").write_bytes(b"")
    write_truncated_jpeg(root / "truncated.jpg")
    write_image(root / "whole.png", "RGB", size=(64, 48), seed=1)
    whole = (root / "whole.png").read_bytes()
    (root / "whole.png").unlink()
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "random_bytes.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    write_not_an_image(root / "text.png")
    png_bomb(root / "bomb.png")
    (root / "dangling.jpg").symlink_to(root / "does_not_exist.jpg")
    (root / "loop_a.jpg").symlink_to(root / "loop_b.jpg")
    (root / "loop_b.jpg").symlink_to(root / "loop_a.jpg")
    bad = ["zero_bytes.jpg", "truncated.jpg", "truncated.png", "random_bytes.jpg",
           "text.png", "bomb.png", "dangling.jpg", "loop_a.jpg",
           "loop_b.jpg"]  # fmt: skip
    kinds.update(dict.fromkeys(bad, "bad"))

    Image.new("RGB", (30, 20), (10, 200, 30)).save(root / "png_named.jpg", "PNG")
    write_image(root / "one_pixel.png", "RGB", size=(1, 1), seed=2)
    write_image(root / "wide.png", "RGB", size=(10_000, 10), seed=3)
    write_image(root / "sixteen_bit.png", "I;16", size=(24, 24), seed=4)
    write_image(root / "cmyk.jpg", "CMYK", size=(24, 24), seed=5)
    write_image(root / "palette_alpha.png", P_TRANSPARENT, size=(24, 24), seed=6)
    write_frames(root / "frames.gif")
    write_frames(root / "frames.tif")
    write_exif_rotated_jpeg(root / "exif_rotated.jpg")
    for seed, name in enumerate(ODD_NAMES):
        write_image(root / name, "RGB", size=(20, 20), seed=10 + seed)
    good = ["png_named.jpg", "one_pixel.png", "wide.png", "sixteen_bit.png",
            "cmyk.jpg", "palette_alpha.png", "frames.gif", "frames.tif",
            "exif_rotated.jpg", *ODD_NAMES]  # fmt: skip
    kinds.update(dict.fromkeys(good, "good"))

    (root / "folder.jpg").mkdir()  # a directory with an image's name: not a file
    (root / "dir_loop").symlink_to(root)  # a linked directory is not entered
    return kinds


def test_bad_inputs_are_named_and_good_ones_embedded(
    ray_address: str, tmp_path: Path, checkpoint: Path
) -> None:
    root = tmp_path / "corpus"
    kinds = build_corpus(root)
    out = tmp_path / "e.pth"
    summary = lightly_train.embed(
        out=out, data=root, checkpoint=checkpoint, image_size=SIZE
    )
    bad = sorted(n for n, k in kinds.items() if k == "bad")
    good = sorted(n for n, k in kinds.items() if k == "good")
    assert sorted(summary.failed) == bad
    assert "DecompressionBomb" in summary.failed["bomb.png"]
    # The report lists them all, in file order, readable by any CSV reader.
    with open(summary.failed_report, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filename", "error"]
    assert [r[0] for r in rows[1:]] == bad

    result = torch.load(out, weights_only=True)
    assert result["filenames"] == good
    embedder = Embedder(load_checkpoint_entry(checkpoint))
    for name, got in zip(result["filenames"], result["embeddings"], strict=True):
        image = load_image((root / name).read_bytes(), (SIZE, SIZE))
        want = embedder.embed(image[None])[0]
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, err_msg=name)


def test_multi_frame_files_embed_their_first_frame(tmp_path: Path) -> None:
    for name in ("frames.gif", "frames.tif"):
        write_frames(tmp_path / name)
        first = load_image((tmp_path / name).read_bytes(), (16, 24))
        assert tuple(first[8, 12]) == (0, 40, 255), name  # frame 0's colour


def test_a_missing_manifest_entry_is_named(
    ray_address: str, tmp_path: Path, checkpoint: Path
) -> None:
    write_image(tmp_path / "a.png", "RGB", size=(20, 20), seed=0)
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{tmp_path / 'a.png'}\n{tmp_path / 'gone.png'}\n")
    summary = lightly_train.embed(out=tmp_path / "e.pth", data=manifest,
                                  checkpoint=checkpoint, image_size=SIZE)  # fmt: skip
    gone = str(tmp_path / "gone.png")  # a manifest's entries are named as given
    assert list(summary.failed) == [gone] and summary.num_images == 1
    assert "FileNotFoundError" in summary.failed[gone]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_named(
    ray_address: str, tmp_path: Path, checkpoint: Path
) -> None:
    write_image(tmp_path / "a.png", "RGB", size=(20, 20), seed=0)
    write_image(tmp_path / "locked.png", "RGB", size=(20, 20), seed=1)
    (tmp_path / "locked.png").chmod(0)
    summary = lightly_train.embed(out=tmp_path / "e.pth", data=tmp_path,
                                  checkpoint=checkpoint, image_size=SIZE)  # fmt: skip
    assert list(summary.failed) == ["locked.png"]
    assert "PermissionError" in summary.failed["locked.png"]
