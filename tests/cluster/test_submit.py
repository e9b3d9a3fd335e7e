"""The ``ray job submit`` scripts, run with a fake ``ray`` that records its arguments.

The arguments are parsed by Ray's own ``ray job submit`` command (without running it)
and the entrypoint is checked as a ``lightly-train`` command (cluster_files.py).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from ray.dashboard.modules.job.cli import job_cli_group
from ray.runtime_env import RuntimeEnv

from lightly_train.errors import LightlyTrainError
from tests.cluster.cluster_files import CLUSTER, LAUNCHER, check_command, load


def run_submit(script: str, tmp_path: Path, *args: str, token: bool = False):
    """Runs a submit script with a fake ``ray`` that records its arguments."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (home / ".ray").mkdir(parents=True)
    if token:
        (home / ".ray" / "auth_token").write_text("secret")
    fake = bin_dir / "ray"
    fake.write_text(
        '#!/bin/sh\nprintf "%s" "${RAY_AUTH_MODE:-}" > "$FAKE_DIR/mode"\n'
        'printf "%s\\0" "$@" > "$FAKE_DIR/argv"\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(home)}
    subprocess.run(
        [str(CLUSTER / script), *args],
        env={**env, "FAKE_DIR": str(tmp_path)},
        check=True,
        timeout=30,
    )
    argv = (tmp_path / "argv").read_text().split("\0")[:-1]
    return argv, (tmp_path / "mode").read_text()


def check_submit(argv: list[str]) -> tuple[dict[str, Any], BaseModel]:
    """Parses ``ray job submit`` arguments with Ray's CLI; validates the entrypoint."""
    assert argv[:2] == ["job", "submit"]
    params = job_cli_group.commands["submit"].make_context("submit", argv[2:]).params
    assert params["address"]
    runtime_env = json.loads(params["runtime_env_json"] or "{}")
    RuntimeEnv(**runtime_env)
    assert set(runtime_env) <= RuntimeEnv.known_fields
    # The job server runs shlex.join(entrypoint) in a shell.
    entrypoint = shlex.split(shlex.join(params["entrypoint"]))
    return params, check_command(entrypoint)


@pytest.mark.parametrize("command", ["embed", "train"])
def test_submit_script(command: str, tmp_path: Path) -> None:
    script = CLUSTER / f"submit_{command}.sh"
    assert os.access(script, os.X_OK)
    argv, mode = run_submit(script.name, tmp_path)
    params, config = check_submit(argv)
    assert params["entrypoint"][:2] == ("lightly-train", command)
    assert config.accelerator == "gpu"
    assert mode == ""  # no token anywhere: no token mode


def test_submit_script_sizes_fit_the_launcher(tmp_path: Path) -> None:
    argv, _ = run_submit("submit_train.sh", tmp_path)
    _, config = check_submit(argv)
    gpu = load(LAUNCHER)["available_node_types"]["gpu_worker"]
    assert config.devices <= gpu["resources"]["GPU"]  # devices are GPUs per node
    assert config.num_nodes <= gpu["max_workers"]


def test_submit_script_passes_arguments_and_token(tmp_path: Path) -> None:
    argv, mode = run_submit(
        "submit_embed.sh", tmp_path, "image_size=[224,160]", token=True
    )
    _, config = check_submit(argv)
    assert config.size == (224, 160)
    assert mode == "token"  # ~/.ray/auth_token exists: the client sends it


def test_submit_script_bad_argument_is_caught(tmp_path: Path) -> None:
    argv, _ = run_submit("submit_embed.sh", tmp_path, "image_sise=128")
    with pytest.raises(LightlyTrainError, match="image_size"):
        check_submit(argv)
