"""The method registry and the errors every method gives for bad arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightly_train.errors import LightlyTrainError
from lightly_train.methods import Method, get_method, list_methods
from lightly_train.models import build_embedding_model


def test_list_methods() -> None:
    assert list_methods() == ["dino", "distillation", "simclr"]


@pytest.mark.parametrize("name", list_methods())
def test_get_method(name: str) -> None:
    method_cls = get_method(name)
    assert issubclass(method_cls, Method)
    assert get_method(name.upper()) is method_cls


def test_unknown_method_names_closest_and_lists_all() -> None:
    with pytest.raises(LightlyTrainError) as info:
        get_method("simclrv2")
    message = str(info.value)
    assert "Unknown method 'simclrv2'" in message
    assert "Did you mean 'simclr'?" in message
    assert "Valid methods are: dino, distillation, simclr." in message


@pytest.mark.parametrize("name", list_methods())
def test_unknown_method_args_key_lists_valid_keys(name: str) -> None:
    method_cls = get_method(name)
    with pytest.raises(LightlyTrainError) as info:
        method_cls(build_embedding_model("torchvision/resnet18"), {"not_a_key": 1})
    message = str(info.value)
    assert "Unknown method_args key(s) 'not_a_key'" in message
    for key in method_cls.args_cls.model_fields:
        assert key in message


@pytest.mark.parametrize("name", list_methods())
def test_unknown_transform_args_key_lists_valid_keys(name: str) -> None:
    method_cls = get_method(name)
    with pytest.raises(
        LightlyTrainError, match="Valid transform_args keys are: .*image_size"
    ):
        method_cls.transform({"imgae_size": 32})


def test_close_key_is_suggested() -> None:
    with pytest.raises(LightlyTrainError, match="Did you mean 'temperature'"):
        get_method("simclr")(
            build_embedding_model("torchvision/resnet18"), {"temprature": 1}
        )


def test_invalid_value_names_the_key(teacher_ckpt: Path) -> None:
    with pytest.raises(LightlyTrainError, match="Invalid method_args: temperature"):
        get_method("simclr")(
            build_embedding_model("torchvision/resnet18"), {"temperature": -1}
        )
    with pytest.raises(LightlyTrainError, match="Invalid transform_args: image_size"):
        get_method("simclr").transform({"image_size": "big"})
