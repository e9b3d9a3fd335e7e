"""The CLI's OpenMP wait policy: passive unless the user names one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lightly_train._openmp import wait_passively

# The CLI's entry point as `lightly-train --help` runs it, then the policy it left.
_CLI = (
    "import os, sys\n"
    "sys.argv = ['lightly-train', '--help']\n"
    "from lightly_train.cli import main\n"
    "main()\n"
    "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
)


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env={**environ, **env},
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.splitlines()[-1]


def test_cli__sets_passive_before_torch() -> None:
    assert _run(_CLI) == "PASSIVE False"


def test_cli__keeps_the_users_policy() -> None:
    assert _run(_CLI, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"


def test_wait_passively__too_late_once_torch_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch  # noqa: F401 - what makes it too late

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert wait_passively() is False
    assert "OMP_WAIT_POLICY" not in os.environ


def test_wait_passively__before_torch() -> None:
    code = (
        "from lightly_train._openmp import wait_passively\n"
        "import os\n"
        "print(wait_passively(), os.environ['OMP_WAIT_POLICY'])\n"
    )
    assert _run(code) == "True PASSIVE"
