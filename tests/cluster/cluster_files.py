"""The cluster/ files, and what a ``lightly-train`` command run on a cluster must be."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel

import lightly_train
from lightly_train.cli import cli
from lightly_train.config import parse_cli_args, validate_config
from lightly_train.embedding.config import EmbedConfig
from lightly_train.exporting import ExportConfig
from lightly_train.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
LAUNCHER = CLUSTER / "ray-cluster.yaml"
KUBERAY = sorted((CLUSTER / "kuberay").glob("ray*.yaml"))
SHARED = PurePosixPath("/mnt/shared")  # where every node mounts the shared storage
GPU = "nvidia.com/gpu"
CONFIGS: dict[str, type[BaseModel]] = {
    "train": TrainConfig,
    "pretrain": TrainConfig,
    "embed": EmbedConfig,
    "export": ExportConfig,
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def check_command(argv: list[str]) -> BaseModel:
    """Validates ``lightly-train <command> key=value ...`` as the CLI would."""
    assert argv[0] == "lightly-train", argv
    assert argv[1] in cli.commands, f"{argv[1]} not in {sorted(cli.commands)}"
    config = validate_config(CONFIGS[argv[1]], parse_cli_args(argv[2:]))
    # Path arguments are read on the cluster's nodes: absolute, on shared storage,
    # or URIs (train's out excepted: checkpoints and logs go to a shared path).
    for key in ("out", "data", "checkpoint"):
        value = getattr(config, key, None)
        paths = [] if value is None else [value] if isinstance(value, str) else value
        for path in paths:
            if "://" in path and not (isinstance(config, TrainConfig) and key == "out"):
                continue
            assert PurePosixPath(path).is_relative_to(SHARED), (key, path)
    if isinstance(config, TrainConfig):  # plain strings in the config: check names
        assert config.model in lightly_train.list_models(), config.model
        assert config.method in lightly_train.list_methods(), config.method
    return config
