"""``ray job submit`` of ``lightly-train``, for real, to a head with token auth.

The module starts its own Ray head with ``ray start --head`` (dashboard and job server
included, ``ray[default]``), with Ray 2.60's token authentication turned on the way a
user turns it on: ``RAY_AUTH_MODE=token`` and the token in a file named by
``RAY_AUTH_TOKEN_PATH``, set for ``ray start`` and for every ``ray job`` command. The
token is made for this module only, so ``~/.ray/auth_token`` is neither read nor
written.

Needs ``ray[default]`` (the dashboard's job server): without it ``ray start`` fails
here with "Cannot include dashboard with missing packages".

Teardown does not run ``ray stop``: it kills every Ray process on the machine, the test
session's own ``ray.init`` cluster included. ``ray start`` runs in a new session here,
so the head's daemons share its process group, and every process of this head inherits
its ``RAY_AUTH_TOKEN_PATH``; teardown SIGKILLs (as ``ray stop --force``) the processes
of that group or with that variable, and their descendants (the raylet's workers, the
job drivers, which Ray puts in process groups of their own), nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient

from lightly_train.checkpoint import create_checkpoint
from tests.images import write_image

BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
# What `ray job submit` is given, as in cluster/submit_*.sh: env vars, no working_dir
# upload (lightly-train is installed where the head runs).
RUNTIME_ENV = json.dumps({"env_vars": {"PYTHONUNBUFFERED": "1"}})
# Variables that would make a `ray` command find another cluster or another token.
_SCRUB = (
    "RAY_ADDRESS",
    "RAY_API_SERVER_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Head:
    address: str  # the job server, http://127.0.0.1:<dashboard port>
    env: dict[str, str]  # what a user with the token has set: token mode + token path
    token: str

    def ray(self, *args: str, env: dict[str, str] | None = None, timeout=300):
        """Runs ``ray <args>`` as a user would, in ``env`` (default: with the token).

        Its output is returned without the colour codes of Ray's CLI logger.
        """
        result = subprocess.run(
            [RAY, *args], env=self.env if env is None else env, timeout=timeout,
            capture_output=True, text=True,
        )  # fmt: skip
        result.stdout = _ANSI.sub("", result.stdout)
        result.stderr = _ANSI.sub("", result.stderr)
        return result

    def submit(self, submission_id: str, *entrypoint: str, env=None, timeout=300):
        """Blocking ``ray job submit``: tails the job's log, exits 1 if it failed."""
        return self.ray(
            "job", "submit", "--address", self.address,
            "--submission-id", submission_id, "--runtime-env-json", RUNTIME_ENV,
            "--", *entrypoint, env=env, timeout=timeout,
        )  # fmt: skip

    def client(self) -> JobSubmissionClient:
        """Ray's job SDK, given the token explicitly (no process-wide settings)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return JobSubmissionClient(self.address, headers=headers)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _proc_table(marker: bytes) -> dict[int, tuple[int, int, bool]]:
    """``{pid: (ppid, pgid, marker in environment)}`` of live processes, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z":  # zombies are dead already
            table[int(entry)] = (int(fields[1]), int(fields[2]), marker in environ)
    return table


def _head_processes(pgid: int, marker: bytes) -> set[int]:
    """The head's processes: its process group, every process whose environment
    has ``marker`` (all inherit this head's token path), and their descendants."""
    table = _proc_table(marker)
    found = {pid for pid, (_, group, has) in table.items() if group == pgid or has}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in found}
        grew = not children <= found
        found |= children
    # Never this test process or its ancestors (the session's own Ray is not ours).
    pid = os.getpid()
    while pid > 1:
        found.discard(pid)
        pid = table.get(pid, (1, 0, False))[0]
    return found


def _kill_head(pgid: int, marker: bytes) -> None:
    """What ``ray stop --force`` does (SIGKILL), for this head's processes only."""
    deadline = time.monotonic() + 30
    while (pids := _head_processes(pgid, marker)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    assert not pids, f"Ray processes of the test head still alive: {sorted(pids)}"


def _wait_for_job_server(address: str, token: str, timeout: float = 60) -> None:
    request = urllib.request.Request(
        f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # A short temp dir: Ray's Unix sockets live under it (paths are limited to ~107).
    root = Path(tempfile.mkdtemp(prefix="ltj-", dir="/tmp"))
    token = secrets.token_hex(32)  # what `ray get-auth-token --generate` makes
    token_path = root / "auth_token"
    token_path.write_text(token)
    token_path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    # A user's activated venv: the job's shell entrypoint finds `lightly-train`.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Ray replaces --node-ip-address=127.0.0.1 by the host's network address unless
    # it is told this is a single-node cluster; keep everything on the loopback.
    head_env = env | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    gcs, dashboard, client, agent = _free_ports(4)
    command = [
        RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", "--num-cpus=2", "--num-gpus=0",
        f"--temp-dir={root / 'ray'}", "--disable-usage-stats",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=head_env, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    pgid = process.pid  # the session leader: every daemon it starts keeps this group
    try:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"{shlex.join(command)} failed:\n{output}"
        address = f"http://127.0.0.1:{dashboard}"
        _wait_for_job_server(address, token)
        yield Head(address=address, env=env, token=token)
    finally:
        process.kill()
        _kill_head(pgid, f"RAY_AUTH_TOKEN_PATH={token_path}".encode())
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five images, written out of order, in a nested folder."""
    root = tmp_path_factory.mktemp("job_images")
    names = ["b.png", "sub/c.jpg", "9.png", "a.jpg", "10.png"]
    for seed, name in enumerate(names):
        write_image(root / name, "RGB", size=(36, 28), seed=seed)
    return root


def _id(kind: str) -> str:
    return f"lightly-train-{kind}-{uuid.uuid4().hex[:8]}"


def _report(result: subprocess.CompletedProcess) -> str:
    out, err = result.stdout, result.stderr
    return f"exit {result.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def test_embed_job_succeeds(head: Head, images: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "random.ckpt"
    create_checkpoint(checkpoint, model="torchvision/resnet18")
    out = tmp_path / "emb.csv"
    job = _id("embed")
    result = head.submit(
        job, "lightly-train", "embed", f"out={out}", f"data={images}",
        f"checkpoint={checkpoint}", "format=csv", "image_size=16",
    )  # fmt: skip
    assert result.returncode == 0, _report(result)
    assert f"Job '{job}' succeeded" in result.stdout + result.stderr
    client = head.client()
    assert client.get_job_status(job) == JobStatus.SUCCEEDED

    lines = out.read_text().splitlines()
    assert lines[0] == "filename," + ",".join(f"embedding_{i}" for i in range(512))
    filenames = [line.split(",")[0] for line in lines[1:]]
    assert filenames == ["10.png", "9.png", "a.jpg", "b.png", "sub/c.jpg"]
    assert all(len(line.split(",")) == 513 for line in lines[1:])
    assert f"Embeddings written to '{out}'" in client.get_job_logs(job)


def test_train_job_succeeds(head: Head, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    job = _id("train")
    result = head.submit(
        job, "lightly-train", "train", f"out={out}", f"data={images}",
        "model=torchvision/resnet18", "epochs=1", "batch_size=4",
        "transform_args.image_size=[32,32]",
    )  # fmt: skip
    assert result.returncode == 0, _report(result)
    assert head.client().get_job_status(job) == JobStatus.SUCCEEDED
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["lightly_train"]["model"] == "torchvision/resnet18"


def test_bad_argument_job_fails_with_clear_message(head: Head, tmp_path: Path) -> None:
    job = _id("bad")
    result = head.submit(
        job, "lightly-train", "embed", f"out={tmp_path / 'e.xml'}",
        f"data={tmp_path}", f"checkpoint={tmp_path / 'c.ckpt'}", "format=xml",
    )  # fmt: skip
    assert result.returncode == 1, _report(result)
    assert f"Job '{job}' failed" in result.stdout + result.stderr
    client = head.client()
    info: JobDetails = client.get_job_info(job)
    assert info.status == JobStatus.FAILED
    assert "Job entrypoint command failed with exit code 2" in info.message
    logs = client.get_job_logs(job)
    assert "Error: Invalid value 'xml' for 'format': valid formats are" in logs
    assert "Traceback" not in logs
    assert list(tmp_path.iterdir()) == []


_MISSING = "Authentication required: Unauthorized: Missing authentication token"
_REFUSED = {
    # The token is there, but RAY_AUTH_MODE is not set: the client sends nothing.
    "token_but_no_mode": [_MISSING, "RAY_AUTH_MODE is currently 'disabled'"],
    # No token anywhere: no RAY_AUTH_* variables, an empty HOME.
    "no_token": [_MISSING],
    # Token mode with another token.
    "wrong_token": ["Authentication failed: Forbidden: Invalid authentication token"],
}


@pytest.mark.parametrize("case", list(_REFUSED))
def test_submit_without_the_token_is_refused(
    head: Head, tmp_path: Path, case: str
) -> None:
    env = {k: v for k, v in head.env.items() if k not in _SCRUB}
    if case == "token_but_no_mode":
        env["RAY_AUTH_TOKEN_PATH"] = head.env["RAY_AUTH_TOKEN_PATH"]
    elif case == "no_token":
        env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    else:
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    job = _id("refused")
    result = head.submit(job, "lightly-train", "--help", env=env, timeout=120)
    assert result.returncode != 0, _report(result)
    for message in _REFUSED[case]:
        assert message in result.stderr, _report(result)
    # Nothing was submitted: the job server does not know the job.
    assert job not in [info.submission_id for info in head.client().list_jobs()]
