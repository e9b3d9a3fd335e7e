"""A custom model's code travels with it when no installed package provides it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision
from ray import cloudpickle

from lightly_train._by_value import code_travels, uninstalled_package
from lightly_train.models.embedding_model import EmbeddingModel

NET = """
import torch


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
"""

# Unpickles stdin in a process whose sys.path lacks the test's directory.
LOAD = "import pickle, sys; print(pickle.load(sys.stdin.buffer).linear.out_features)"


@pytest.fixture
def net_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """An instance of ``Net`` from ``by_value_pkg.models.net``, a package only this
    process can import (a sys.path edit)."""
    package = tmp_path / "lib" / "by_value_pkg" / "models"
    package.mkdir(parents=True)
    for init in (package.parent / "__init__.py", package / "__init__.py"):
        init.write_text("")
    (package / "net.py").write_text(NET)
    monkeypatch.syspath_prepend(tmp_path / "lib")
    for name in [n for n in sys.modules if n.startswith("by_value_pkg")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module("by_value_pkg.models.net").Net()


def load_elsewhere(payload: bytes) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD], input=payload, capture_output=True, cwd="/"
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_uninstalled_package_names_the_top_level_package(net_package: object) -> None:
    assert uninstalled_package(net_package) == "by_value_pkg"


@pytest.mark.parametrize(
    "model",
    [
        None,
        "torchvision/resnet18",
        torchvision.models.resnet18(),  # installed from a wheel
        EmbeddingModel(torchvision.models.resnet18()),  # installed editable
    ],
    ids=["none", "name", "torchvision", "lightly_train"],
)
def test_installed_or_named_models_stay_by_reference(model: object) -> None:
    assert uninstalled_package(model) is None


def test_the_code_travels_only_while_active(net_package: object) -> None:
    with code_travels(net_package):
        inside = cloudpickle.dumps(net_package)
    after = cloudpickle.dumps(net_package)

    code, out, err = load_elsewhere(inside)
    assert code == 0, err
    assert out.strip() == "5"
    code, _, err = load_elsewhere(after)
    assert code != 0 and "No module named 'by_value_pkg'" in err
