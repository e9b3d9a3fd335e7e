"""The cluster launcher config, the Dockerfile, the command checker; no cluster runs.

ray-cluster.yaml goes through Ray's own ``prepare_config`` + ``validate_config`` (the
JSON schema ``ray/autoscaler/ray-schema.json``), as ``ray up`` does before it launches
anything; its start commands through the options of ``ray start``.
"""

from __future__ import annotations

import copy
import re
import shlex
import sys
import tomllib
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import pytest
import ray
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start

from lightly_train.cli import cli
from lightly_train.errors import LightlyTrainError
from tests.cluster.cluster_files import (
    CLUSTER,
    CONFIGS,
    KUBERAY,
    LAUNCHER,
    ROOT,
    SHARED,
    check_command,
    load,
)


def test_every_cli_command_has_a_config() -> None:
    assert set(cli.commands) == set(CONFIGS)


def test_check_command_rejects_what_the_cli_rejects() -> None:
    good = ["lightly-train", "embed", "out=/mnt/shared/e.pth", "data=/mnt/shared/d"]
    check_command([*good, "checkpoint=/mnt/shared/c.ckpt"])
    with pytest.raises(LightlyTrainError, match="Did you mean 'checkpoint'"):
        check_command([*good, "checkpiont=/mnt/shared/c.ckpt"])
    with pytest.raises(AssertionError):
        check_command(["lightly-train", "embedd", *good[2:]])
    with pytest.raises(AssertionError):  # a local path breaks on many nodes
        check_command([*good, "checkpoint=last.ckpt"])
    check_command(["lightly-train", "embed", "out=s3://b/e.pth", "data=s3://b/d",
                   "checkpoint=gs://c/last.ckpt"])  # fmt: skip
    with pytest.raises(AssertionError):  # train writes checkpoints to a directory
        check_command(["lightly-train", "train", "out=s3://b/run", "data=s3://b/d",
                       "model=torchvision/resnet18"])  # fmt: skip
    train = ["lightly-train", "train", "out=/mnt/shared/o", "data=/mnt/shared/d"]
    check_command([*train, "model=torchvision/resnet18"])
    with pytest.raises(AssertionError, match="resnet5"):
        check_command([*train, "model=torchvision/resnet5"])


# ----- ray-cluster.yaml (the cluster launcher, `ray up`) -----


def prepared_launcher(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config as ``ray up`` sees it (defaults merged), validated by Ray."""
    prepared = prepare_config(copy.deepcopy(config or load(LAUNCHER)))
    validate_config(prepared)  # jsonschema against ray/autoscaler/ray-schema.json
    return prepared


def test_launcher_passes_rays_schema() -> None:
    prepared_launcher()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5),
        lambda c: c["available_node_types"]["head"].pop("node_config"),
        lambda c: c["docker"].update(gpus="all"),
        lambda c: c.update(idle_timeout_minute=5),
        lambda c: c.update(head_node_type="missing"),
        lambda c: c.update(max_workers=0),  # smaller than the sum of min_workers
    ],
)
def test_launcher_schema_catches_mistakes(mutate: Callable[[dict], Any]) -> None:
    config = load(LAUNCHER)
    mutate(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        prepared_launcher(config)


def start_args(command: str) -> tuple[dict[str, str], list[str]]:
    """The exported variables and the ``ray start`` arguments of a start command."""
    exports, args = {}, []
    for part in command.split(";"):
        words = shlex.split(part)
        if words[:1] == ["export"]:
            exports.update(w.split("=", 1) for w in words[1:])
        elif words[:2] == ["ray", "start"]:
            args = words[2:]
    return exports, args


def test_launcher_cluster_shape() -> None:
    config = prepared_launcher()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")
    workers = {name: t for name, t in types.items() if t is not head}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) > 0]
    cpu = [t for t in workers.values() if not t["resources"].get("GPU")]
    assert gpu and cpu
    # accelerator=gpu fails while the cluster has no GPU: one GPU node stays up.
    assert all(1 <= t["min_workers"] <= t["max_workers"] for t in gpu)
    assert all(0 <= t["min_workers"] <= t["max_workers"] for t in cpu)
    assert config["idle_timeout_minutes"] > 0
    assert f"--volume {SHARED}:{SHARED}" in config["docker"]["run_options"]
    assert any(str(SHARED) in cmd for cmd in config["initialization_commands"])


def test_launcher_start_commands_are_valid_ray_start_calls() -> None:
    config = prepared_launcher()
    (head_env, head), (worker_env, worker) = (
        start_args(config[key][-1])
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
    )
    for args in (head, worker):
        ray_start.make_context("start", list(args))  # raises on unknown options
    head_params = ray_start.make_context("start", list(head)).params
    worker_params = ray_start.make_context("start", list(worker)).params
    assert head_params["head"] and not worker_params["head"]
    assert worker_params["address"] == f"$RAY_HEAD_IP:{head_params['port']}"
    # Token auth on every node, from the token directory the launcher copies over.
    for env in (head_env, worker_env):
        assert env["RAY_AUTH_MODE"] == "token"
        token_dir = str(PurePosixPath(env["RAY_AUTH_TOKEN_PATH"]).parent)
        assert token_dir in config["file_mounts"]


# ----- Dockerfile and the image -----


def test_dockerfile_base_image_matches_installed_ray() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    match = re.fullmatch(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<py>\d+)-gpu", base)
    assert match, base
    assert match["ray"] == ray.__version__
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    low = tuple(map(int, requires["requires-python"].removeprefix(">=").split(".")))
    assert (int(match["py"][0]), int(match["py"][1:])) >= low
    assert match["py"] == f"{sys.version_info.major}{sys.version_info.minor}"
    # Everything it copies exists, and the BuildKit ignore file lets it through.
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+(\S+)$", text, re.MULTILINE)
    for sources, _ in copies:
        for source in sources.split():
            assert (ROOT / source).exists() and f"!{source}" in ignore
    # The package is installed from where pyproject.toml was copied to.
    (project,) = [dest for sources, dest in copies if "pyproject.toml" in sources]
    assert re.search(rf"pip install .*{re.escape(project.rstrip('/'))}\s", text)


def test_one_image_everywhere() -> None:
    images = {load(LAUNCHER)["docker"]["image"]}
    for path in KUBERAY:
        doc = load(path)
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        pods = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        images |= {
            c["image"] for p in pods for c in p["template"]["spec"]["containers"]
        }
    assert len(images) == 1, images


def test_readme_names_every_cluster_file() -> None:
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert f"`{path.relative_to(CLUSTER).as_posix()}`" in readme, path
