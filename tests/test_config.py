from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import PositiveInt

from lightly_train.config import (
    help_text,
    parse_cli_args,
    parse_value,
    type_name,
    validate_config,
)
from lightly_train.embedding.config import EmbedConfig
from lightly_train.errors import LightlyTrainError

REQUIRED = {"out": "emb.pth", "data": "images", "checkpoint": "last.ckpt"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("123", 123),
        ("-1.5", -1.5),
        ("null", None),
        ("None", None),
        ("true", True),
        ("False", False),
        ('"a b"', "a b"),
        ("'a b'", "a b"),
        ('"123"', "123"),
        ("[224, 160]", [224, 160]),
        ("[224,160]", [224, 160]),
        ("(1, 2)", (1, 2)),
        ('{"a": [1, "x"]}', {"a": [1, "x"]}),
        ("out/my_experiment", "out/my_experiment"),
        ("last.ckpt", "last.ckpt"),
        ("a b", "a b"),
        ("", ""),
        # Bare words inside lists and dicts are strings, as users type them.
        ("[a, b]", ["a", "b"]),
        ("[dir_a,dir_b]", ["dir_a", "dir_b"]),
        ("[a b, 'c,d', 3, [x, y], {k: v}]", ["a b", "c,d", 3, ["x", "y"], {"k": "v"}]),
        (
            "{mean: [0.5, 0.5, 0.5], std: [0.2,0.2,0.2]}",
            {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
        ),
        ("[true, null, x]", [True, None, "x"]),
        ("(a, 1)", ("a", 1)),
        ("[C:/data, /tmp/x.jpg]", ["C:/data", "/tmp/x.jpg"]),
        ("[a,]", ["a"]),
        # Malformed brackets: the text is a name after all.
        ("[a", "[a"),
        ("[a]b", "[a]b"),
        ("[a[1]]", "[a[1]]"),
        ("[,]", "[,]"),
        ("{a b}", "{a b}"),
        ("[__import__('os')]", "[__import__('os')]"),
        ("'unterminated", "'unterminated"),
        ('we,ird "ñame".png', 'we,ird "ñame".png'),
        ("__import__('os').system('x')", "__import__('os').system('x')"),
        ("open('x').read()", "open('x').read()"),
        ("1 + 2", "1 + 2"),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    parsed = parse_value(text)
    assert parsed == value
    assert isinstance(parsed, type(value))  # numbers are int/float subclasses
    assert isinstance(parsed, bool) == isinstance(value, bool)


def test_parse_value__never_evaluates(tmp_path: Path) -> None:
    marker = tmp_path / "evaluated"
    text = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    assert parse_value(text) == text
    assert parse_cli_args([f"out={text}"]) == {"out": text}
    assert not marker.exists()


def test_parse_cli_args__nested() -> None:
    args = [
        "out=emb.pth",
        "image_size=[224,160]",
        "transform_args.image_size=[32,32]",
        "transform_args.normalize.mean=[0.5, 0.5, 0.5]",
        "transform_args.normalize.std=null",
        "overwrite=true",
        "expr=a=b",
        "empty=",
    ]
    assert parse_cli_args(args) == {
        "out": "emb.pth",
        "image_size": [224, 160],
        "transform_args": {
            "image_size": [32, 32],
            "normalize": {"mean": [0.5, 0.5, 0.5], "std": None},
        },
        "overwrite": True,
        "expr": "a=b",
        "empty": "",
    }


def test_parse_cli_args__empty() -> None:
    assert parse_cli_args([]) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["out=a", "out=b"], "'out' is given more than once"),
        (["a.b=1", "a.b=2"], "'a.b' is given more than once"),
        (["a.b=1", "a=2"], "'a' is given more than once"),
        (["a=1", "a.b=2"], "'a' is given as a value and a dict"),
        (["a.b=1", "a.b.c=2"], "'a.b' is given as a value and a dict"),
        (["out"], "'out' is not of the form key=value"),
        (["=x"], "'=x' is not of the form key=value"),
        (["out:x"], "'out:x' is not of the form key=value"),
    ],
)
def test_parse_cli_args__errors(args: list[str], message: str) -> None:
    with pytest.raises(LightlyTrainError, match=message):
        parse_cli_args(args)


@pytest.mark.parametrize("arg", ["a..b=1", ".a=1", "a.=1"])
def test_parse_cli_args__empty_key_part(arg: str) -> None:
    # An empty part of a dotted key is a typo, not a key named "".
    with pytest.raises(LightlyTrainError, match="has an empty part in its key"):
        parse_cli_args([arg])


def test_validate_config__from_cli() -> None:
    args = [
        "out=123",
        "data=[\"dir1\", 'dir2']",
        "checkpoint=last.ckpt",
        "image_size=[224,160]",
        "batch_size=16",
        "num_workers=auto",
        "devices=2",
        "overwrite=true",
        "format=csv",
    ]
    config = validate_config(EmbedConfig, parse_cli_args(args))
    assert config.out == "123"
    assert config.data == ["dir1", "dir2"]
    assert config.image_size == (224, 160)
    assert config.size == (224, 160)
    assert config.batch_size == 16
    assert config.num_workers == "auto"
    assert config.devices == 2
    assert config.overwrite is True
    assert config.format == "csv"


def test_validate_config__defaults() -> None:
    config = validate_config(EmbedConfig, dict(REQUIRED))
    assert config.format == "torch"
    assert config.size == (224, 224)
    assert config.batch_size == "auto"
    assert config.num_workers == "auto"
    assert config.devices == "auto"
    assert config.accelerator == "auto"
    assert config.precision == "32-true"
    assert config.jpeg_decode == "auto"
    assert config.compile is False
    assert config.overwrite is False


def test_auto_batch_size_per_accelerator() -> None:
    from lightly_train.embedding.config import batch_size

    assert (batch_size("auto", "cpu"), batch_size("auto", "gpu")) == (64, 512)
    assert batch_size(7, "gpu") == 7
    # A small job: batches that split it evenly (every batch is padded to the size).
    assert [batch_size("auto", "cpu", n) for n in (1, 16, 20, 65, 1800)] == [
        8,
        16,
        24,
        40,
        64,
    ]
    assert batch_size("auto", "gpu", 300) == 304  # one batch, padded to 8s
    assert batch_size("auto", "gpu", 600) == 304  # two even batches


@pytest.mark.parametrize(
    ("size", "cpu", "gpu"),
    [((224, 224), 64, 512), ((256, 192), 64, 512), ((112, 112), 256, 512),
     ((64, 64), 784, 512), ((32, 32), 1024, 512), ((448, 448), 16, 128),
     ((518, 518), 8, 96), ((2048, 2048), 8, 8)],
)  # fmt: skip
def test_auto_batches_hold_as_many_pixels_as_at_224(
    size: tuple[int, int], cpu: int, gpu: int
) -> None:
    """On CPU, small images: more of them per batch (at most 1024); large: fewer
    (at least 8). On GPUs, large images only: fewer (at least 8)."""
    from lightly_train.embedding.config import batch_size

    assert batch_size("auto", "cpu", image_size=size) == cpu
    assert batch_size("auto", "gpu", image_size=size) == gpu
    assert batch_size(32, "cpu", image_size=size) == 32
    # 9000 files split evenly: 12 batches of 750 at 64 px, padded to 752.
    assert batch_size("auto", "cpu", 9000, (64, 64)) == 752


def test_validate_config__paths(tmp_path: Path) -> None:
    kwargs = {
        "out": tmp_path / "emb.pth",
        "data": (tmp_path / "a", str(tmp_path / "b")),
        "checkpoint": tmp_path / "last.ckpt",
    }
    config = validate_config(EmbedConfig, kwargs)
    assert config.out == str(tmp_path / "emb.pth")
    assert config.data == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert config.checkpoint == str(tmp_path / "last.ckpt")


@pytest.mark.parametrize("text", ["2024.10", "1e3", "007", "1_000"])
def test_validate_config__numeric_looking_path_keeps_its_text(text: str) -> None:
    # A directory named "2024.10" must not become "2024.1" on its way through the CLI.
    args = [f"out={text}", f"data={text}", "checkpoint=last.ckpt"]
    config = validate_config(EmbedConfig, parse_cli_args(args))
    assert config.out == text
    assert config.data == text


def test_validate_config__unknown_argument() -> None:
    with pytest.raises(LightlyTrainError) as ex:
        validate_config(EmbedConfig, {**REQUIRED, "batchsize": 8})
    message = str(ex.value)
    assert "Unknown argument 'batchsize'. Did you mean 'batch_size'?" in message
    assert (
        "Valid arguments are: out, data, checkpoint, format, image_size, batch_size, "
        "num_workers, devices, accelerator, precision, jpeg_decode, compile, "
        "overwrite, resume_interrupted, on_error, shard_size, runner, model." in message
    )


def test_validate_config__unknown_argument_without_close_match() -> None:
    with pytest.raises(LightlyTrainError) as ex:
        validate_config(EmbedConfig, {**REQUIRED, "zzz": 1})
    assert "Unknown argument 'zzz'. Valid arguments are: out, data" in str(ex.value)
    assert "Did you mean" not in str(ex.value)


def test_validate_config__missing_required() -> None:
    with pytest.raises(LightlyTrainError) as ex:
        validate_config(EmbedConfig, {"data": "images"})
    assert str(ex.value).splitlines() == [
        "Missing required argument 'out'.",
        "Missing required argument 'checkpoint'.",
    ]


@pytest.mark.parametrize(
    ("key", "value", "line"),
    [
        (
            "batch_size",
            0,
            "Invalid value 0 for 'batch_size': expected int > 0 or 'auto'.",
        ),
        (
            "batch_size",
            "x",
            "Invalid value 'x' for 'batch_size': expected int > 0 or 'auto'.",
        ),
        (
            "num_workers",
            0,
            "Invalid value 0 for 'num_workers': expected int > 0 or 'auto'.",
        ),
        (
            "devices",
            "all",
            "Invalid value 'all' for 'devices': expected int > 0 or 'auto'.",
        ),
        (
            "image_size",
            [224, 0],
            "Invalid value [224, 0] for 'image_size': "
            "expected int > 0 or [int > 0, int > 0].",
        ),
        (
            "accelerator",
            "tpu",
            "Invalid value 'tpu' for 'accelerator': expected 'auto' or 'cpu' or 'gpu'.",
        ),
        (
            "format",
            "xml",
            "Invalid value 'xml' for 'format': valid formats are csv, lightly_csv, "
            "parquet, torch.",
        ),
        ("overwrite", "maybe", "Invalid value 'maybe' for 'overwrite': expected bool."),
        ("out", None, "Invalid value None for 'out': expected str."),
    ],
)
def test_validate_config__invalid_value(key: str, value: Any, line: str) -> None:
    with pytest.raises(LightlyTrainError) as ex:
        validate_config(EmbedConfig, {**REQUIRED, key: value})
    assert str(ex.value).splitlines() == [line]


def test_validate_config__one_line_per_bad_argument() -> None:
    kwargs = {"out": "emb.pth", "batch_size": -1, "image_size": "big", "batchsize": 8}
    with pytest.raises(LightlyTrainError) as ex:
        validate_config(EmbedConfig, kwargs)
    lines = str(ex.value).splitlines()
    assert len(lines) == 5
    keys = [re.search(r"(?:argument|for) '(\w+)'", line).group(1) for line in lines]
    assert sorted(keys) == [
        "batch_size",
        "batchsize",
        "checkpoint",
        "data",
        "image_size",
    ]


def test_validate_config__is_frozen() -> None:
    config = validate_config(EmbedConfig, dict(REQUIRED))
    with pytest.raises(ValueError):
        config.batch_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("annotation", "name"),
    [
        (int, "int"),
        (bool, "bool"),
        (PositiveInt, "int > 0"),
        (PositiveInt | Literal["auto"], "int > 0 or 'auto'"),
        (tuple[PositiveInt, PositiveInt], "[int > 0, int > 0]"),
        (list[str], "list of str"),
        (str | list[str], "str or list of str"),
        (Literal["cpu", "gpu"], "'cpu' or 'gpu'"),
    ],
)
def test_type_name(annotation: Any, name: str) -> None:
    assert type_name(annotation) == name


def test_help_text() -> None:
    lines = help_text(EmbedConfig).splitlines()
    assert len(lines) == 2 * len(EmbedConfig.model_fields)
    assert lines[0] == "  out  (required)"
    assert lines[1].startswith("      Output file or URI for the embeddings")
    assert "  batch_size  (default: 'auto')" in lines
    assert "  format  (default: 'torch')" in lines
    for name, field in EmbedConfig.model_fields.items():
        assert any(line.startswith(f"  {name}  (") for line in lines), name
        assert f"      {field.description}" in lines, name


def test_bare_list_of_directories_keeps_their_names(tmp_path: Path) -> None:
    args = parse_cli_args(
        ["out=e.pth", "data=[2024.10, dir b, 'c,d']", "checkpoint=x.ckpt"]
    )
    config = validate_config(EmbedConfig, args)
    assert config.data == ["2024.10", "dir b", "c,d"]  # not 2024.1
