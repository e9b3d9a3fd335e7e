"""The README's main job, as `make demo` runs it (on the session's Ray)."""

import runpy
from pathlib import Path

import torch
from PIL import Image


def test_demo_trains_then_embeds_the_sample_photos(ray_address, tmp_path, capsys):
    demo = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "demo.py"))
    demo["main"](tmp_path)
    data = torch.load(tmp_path / "embeddings.pth", weights_only=True)
    assert len(data["filenames"]) == 9 and data["embeddings"].shape == (9, 512)
    assert (tmp_path / "my_experiment" / "checkpoints" / "last.ckpt").is_file()
    printed = capsys.readouterr().out
    assert f"Embeddings are in {(tmp_path / 'embeddings.pth').resolve()}" in printed
    picture = (tmp_path / "explore.png").resolve()
    assert f"A map, neighbours and near-duplicates: {picture}" in printed
    with Image.open(picture) as image:
        assert image.format == "PNG"
    with Image.open(tmp_path / "my_experiment" / "metrics.png") as image:
        assert image.format == "PNG"
