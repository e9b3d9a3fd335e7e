"""Many nodes, tested for real: ``embed`` and ``train`` on a two-node Ray cluster.

``ray.cluster_utils.Cluster`` starts a head and a worker node on this machine, each a
raylet of its own with its own CPUs, object store and worker processes; Ray schedules
across them as across machines (they share the IP and the file system, as nodes on a
shared volume do). Ray's state API (``list_tasks``, ``list_actors``: ``node_id``) says
where the decode tasks, the model actors and the training workers ran.

How this module stays out of the way of the other tests (and they out of its way):

- A process holds one Ray connection. ``tests/conftest.py``'s session fixture
  ``ray_address`` may already have connected this pytest process to a local Ray, and
  ``tests/test_cli.py`` later hands that fixture's *address* to CLI subprocesses.
  Shutting that Ray down here to ``ray.init(address=cluster.address)`` in this process
  would leave the cached fixture value pointing at a dead GCS, and those later tests
  would fail. Creating the ``Cluster`` in this process has global side effects too:
  ``Cluster.shutdown`` resets this process's internal-KV client and the state API
  re-points it, which would break the session Ray's later in-process users.
- So a helper process owns the cluster for the module, and each run is a fresh driver
  process with ``RAY_ADDRESS`` set: exactly how ``ray job submit`` runs lightly-train
  (``lightly_train.runtime.ray_session`` connects to it). The driver also reads the
  state API and writes what it saw to a JSON file. This process never calls into Ray,
  so the module works whether or not, and before or after, another module
  initialised Ray here.
- Every process of the cluster inherits ``RAY_ADDRESS`` and a private ``RAY_TMPDIR``.
  Ray Train's ``PlacementGroupCleaner`` looks its controller up with the state API and
  no address, i.e. ``RAY_ADDRESS``, else the "latest cluster" file in the Ray temp
  dir: on a host with other Ray instances (parallel CI jobs) it would ask another
  cluster, not find the controller and remove the placement group of a live run. A
  private temp dir also keeps this cluster from becoming the "latest" for other Rays.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lightly_train.checkpoint import load_checkpoint_entry
from lightly_train.data.decode import load_image
from lightly_train.data.files import list_image_files
from lightly_train.embedding.blocks import manifest
from lightly_train.embedding.embedder import Embedder
from lightly_train.sizing import plan_actors
from tests.images import write_image

REPO = Path(__file__).resolve().parents[2]
CPUS_PER_NODE = 3  # 2 nodes x 3: two 1-CPU model actors, and CPUs left for decoding
NODE = {
    "num_cpus": CPUS_PER_NODE,
    "object_store_memory": 200 * 1024**2,
    "memory": 4 * 1024**3,  # fixed, so decode tasks' memory requests fit either node
}
# A decoded block (4 rows) of 96 px images is 110 kB, above Ray's 100 KiB limit for
# task results returned inline to their owner (the driver): it stays in the object
# store of the node that decoded it, and Ray Data's locality sends it to the model
# actor on that node. With 32 px images (12 kB blocks) no block has a location on
# the worker node and the head's actor got all 15 batches; real blocks are MBs.
EMBED_SIZE = 96
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 420

# Runs in the helper process: starts the cluster, reports it, holds it until its
# stdin closes. argv: info file, GCS port, dashboard port (the state API needs it).
CLUSTER_SCRIPT = """
import json, os, sys, time
from ray._private.services import get_node_ip_address

info, gcs_port, dashboard_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ["RAY_ADDRESS"] = f"{get_node_ip_address()}:{gcs_port}"  # for all its procs
from ray.cluster_utils import Cluster

node = json.loads(sys.argv[4])
cluster = Cluster(
    initialize_head=True,
    head_node_args={**node, "gcs_server_port": gcs_port, "include_dashboard": True,
                    "dashboard_port": dashboard_port},
)
worker = cluster.add_node(**node)
cluster.wait_for_nodes()
assert cluster.address == os.environ["RAY_ADDRESS"], cluster.address
with open(info + ".tmp", "w") as f:
    json.dump({"address": cluster.address, "head": cluster.head_node.node_id,
               "worker": worker.node_id}, f)
os.rename(info + ".tmp", info)
for line in sys.stdin:  # commands, until the test module closes it
    if line.strip() == "remove-worker-when-busy":
        # Once a model batch has finished on the worker node, take the node away.
        from ray.util.state import list_tasks
        while not any(t.name.endswith(".submit") and t.node_id == worker.node_id
                      and t.state == "FINISHED"
                      for t in list_tasks(address=cluster.address, limit=10_000,
                                          raise_on_missing_output=False)):
            time.sleep(0.2)
        cluster.remove_node(worker)
        with open(info + ".removed", "w") as f:
            json.dump({"node_id": worker.node_id, "time": time.time()}, f)
cluster.shutdown()
"""

# Runs as the driver: ``lightly_train.<command>(**kwargs)`` with RAY_ADDRESS set, then
# what the state API knows about that job's tasks and actors. argv: command, kwargs
# (JSON), result file, number of FINISHED tasks named ``wait_for`` to wait for.
DRIVER_SCRIPT = """
import json, os, sys, time
import lightly_train
from ray.util.state import list_actors, list_jobs, list_tasks

command, kwargs, result = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
wait_for, wait_count = sys.argv[4], int(sys.argv[5])
getattr(lightly_train, command)(**kwargs)  # connects to RAY_ADDRESS, then disconnects
finished = time.time()

address = os.environ["RAY_ADDRESS"]
jobs = [j for j in list_jobs(address=address, raise_on_missing_output=False)
        if j.driver_info is not None and int(j.driver_info.pid) == os.getpid()]
assert len(jobs) == 1, jobs
job_id = jobs[0].job_id
deadline = time.monotonic() + 60  # task events reach the GCS about once a second
while True:
    tasks = list_tasks(address=address, filters=[("job_id", "=", job_id)],
                       detail=True, limit=10_000, raise_on_missing_output=False)
    done = [t for t in tasks if t.name == wait_for and t.state == "FINISHED"]
    if len(done) >= wait_count or time.monotonic() > deadline:
        break
    time.sleep(1)
actors = list_actors(address=address, filters=[("job_id", "=", job_id)],
                     detail=True, limit=10_000, raise_on_missing_output=False)
import ray
from lightly_train.runtime import cluster_can_grow, only_this_machine
ray.init(address=address)
alone, can_grow = only_this_machine(), cluster_can_grow()
ray.shutdown()
with open(result, "w") as f:
    json.dump({
        "job_id": job_id, "finished": finished, "only_this_machine": alone,
        "can_grow": can_grow,
        "tasks": [{"name": t.name, "node_id": t.node_id, "state": t.state,
                   "actor_id": t.actor_id} for t in tasks],
        "actors": [{"class_name": a.class_name, "node_id": a.node_id,
                    "state": a.state, "actor_id": a.actor_id} for a in actors],
    }, f)
"""


@dataclass(frozen=True)
class TwoNodes:
    address: str
    head: str  # node ids
    worker: str
    env: dict[str, str]  # environment for a driver process on this cluster
    logs: Path
    helper: subprocess.Popen[bytes]  # owns the cluster; takes commands on stdin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    """A head and a worker node, ``CPUS_PER_NODE`` CPUs each, in a helper process."""
    logs = tmp_path_factory.mktemp("multinode")
    # Short: Ray's unix socket paths under it must stay below 108 characters.
    ray_tmp = tempfile.mkdtemp(prefix="ray-mn-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    info = logs / "cluster.json"
    args = [str(info), str(free_port()), str(free_port()), json.dumps(NODE)]
    with open(logs / "cluster.log", "w") as log:
        helper = subprocess.Popen(
            [sys.executable, "-c", CLUSTER_SCRIPT, *args],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=REPO,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info.exists():
            if helper.poll() is not None or time.monotonic() > deadline:
                log = tail(logs / "cluster.log")
                pytest.fail(f"The test cluster did not start:\n{log}")
            time.sleep(0.5)
        nodes = json.loads(info.read_text())
        assert nodes["head"] != nodes["worker"]
        yield TwoNodes(
            nodes["address"], nodes["head"], nodes["worker"],
            {**env, "RAY_ADDRESS": nodes["address"]}, logs, helper,
        )  # fmt: skip
    finally:
        assert helper.stdin is not None
        helper.stdin.close()  # the helper shuts the cluster down
        try:
            helper.wait(timeout=120)
        except subprocess.TimeoutExpired:
            helper.kill()  # its reaper processes then stop the nodes
            helper.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def run_driver(
    cluster: TwoNodes, command: str, kwargs: dict[str, Any], wait_for: str = "",
    wait_count: int = 0, extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Runs ``lightly_train.<command>`` as a driver on the cluster: its job's state."""
    result = cluster.logs / f"{command}.json"
    log_path = cluster.logs / f"{command}.log"
    argv = [command, json.dumps(kwargs), str(result), wait_for, str(wait_count)]
    env = {**cluster.env, **(extra_env or {})}
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER_SCRIPT, *argv],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            timeout=RUN_TIMEOUT_S, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, f"{command} failed:\n{tail(log_path)}"
    return json.loads(result.read_text())


def per_node(records: list[dict[str, Any]], cluster: TwoNodes) -> dict[str, int]:
    """How many records ran on each node, by name (``head``, ``worker``, or id)."""
    names = {cluster.head: "head", cluster.worker: "worker"}
    return dict(Counter(names.get(r["node_id"], str(r["node_id"])) for r in records))


def embed_job(
    tmp_path: Path, checkpoint: Path, num_images: int
) -> tuple[Path, Path, dict[str, Any]]:
    """``num_images`` photos-sized PNGs, the output path, and embed's arguments."""
    root = tmp_path / "images"
    for i in range(num_images):
        write_image(root / f"{i:04d}.png", "RGB", size=(120, 100), seed=i)
    out = tmp_path / "e.pth"
    kwargs = {
        "out": str(out), "data": str(root), "checkpoint": str(checkpoint),
        "image_size": EMBED_SIZE, "batch_size": 4, "devices": 2, "accelerator": "cpu",
    }  # fmt: skip
    return root, out, kwargs


def test_embed_spreads_decode_tasks_and_model_actors_over_both_nodes(
    cluster: TwoNodes, tmp_path: Path, checkpoint: Path
) -> None:
    root, out, kwargs = embed_job(tmp_path, checkpoint, 60)
    # One decode task per manifest block (the pipeline's own sizing for this cluster).
    plan = plan_actors(
        "cpu", 2, "auto", "32-true", {"CPU": 2 * CPUS_PER_NODE}, [CPUS_PER_NODE] * 2
    )
    assert plan.num_actors == 2
    assert plan.cpus_per_actor < CPUS_PER_NODE  # one per node, with decode room
    num_blocks = len(manifest(list_image_files(root), plan, kwargs["batch_size"]))
    # Ray Data starts streaming as soon as one model actor is up; on a small data set
    # the first actor can finish everything while the second is still importing torch
    # and is then killed before it is ever placed. Waiting for the whole pool first
    # changes no placement (Ray Data's default for tasks and actors is SPREAD), it only
    # makes both actors live, so where each one runs is on record.
    seen = run_driver(
        cluster, "embed", kwargs, "MapBatches(decode_batch)", num_blocks,
        extra_env={"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "300"},
    )  # fmt: skip

    # Two nodes: not "this machine alone" (no bf16 hint for the driver's CPU);
    # a cluster this process connected to may grow (GPUs asked for are waited for).
    assert seen["only_this_machine"] is False and seen["can_grow"] is True
    # Same output as a single-process computation: decode and forward, file by file.
    data = torch.load(out, weights_only=True)
    names = sorted(p.name for p in root.iterdir())
    assert data["filenames"] == names
    embedder = Embedder(load_checkpoint_entry(checkpoint))
    size = (EMBED_SIZE, EMBED_SIZE)
    expected = [
        embedder.embed(load_image((root / n).read_bytes(), size)[None])[0]
        for n in names
    ]
    got = data["embeddings"].numpy()
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-5, atol=1e-5)

    decode = [
        t for t in seen["tasks"]
        if t["name"] == "MapBatches(decode_batch)" and t["state"] == "FINISHED"
    ]  # fmt: skip
    model = "MapWorker(MapBatches(Embedder))"
    actors = [a for a in seen["actors"] if model in a["class_name"]]
    actor_ids = {a["actor_id"] for a in actors}
    batches = [
        t for t in seen["tasks"]
        if t["actor_id"] in actor_ids and t["name"].endswith(".submit")
        and t["state"] == "FINISHED"
    ]  # fmt: skip
    print(
        f"embed on 2 nodes (head {cluster.head[:8]}, worker {cluster.worker[:8]}): "
        f"decode tasks {per_node(decode, cluster)}, model actors "
        f"{per_node(actors, cluster)}, model batches {per_node(batches, cluster)}"
    )
    assert len(decode) == num_blocks
    assert {t["node_id"] for t in decode} == {cluster.head, cluster.worker}
    assert len(actors) == 2
    assert {a["node_id"] for a in actors} == {cluster.head, cluster.worker}
    assert {t["node_id"] for t in batches} == {cluster.head, cluster.worker}


def test_train_runs_one_worker_on_each_node(cluster: TwoNodes, tmp_path: Path) -> None:
    root = tmp_path / "images"
    for i in range(16):
        write_image(root / f"{i:02d}.png", "RGB", size=(40, 40), seed=i)
    out = tmp_path / "run"
    kwargs = {
        "out": str(out), "data": str(root), "model": "torchvision/resnet18",
        "devices": 1, "num_nodes": 2, "accelerator": "cpu", "epochs": 1,
        "batch_size": 4, "transform_args": {"image_size": 32},
    }  # fmt: skip
    seen = run_driver(cluster, "train", kwargs)

    workers = [a for a in seen["actors"] if a["class_name"] == "RayTrainWorker"]
    print(
        f"train on 2 nodes (head {cluster.head[:8]}, worker {cluster.worker[:8]}): "
        f"RayTrainWorker actors per node {per_node(workers, cluster)}"
    )
    assert len(workers) == 2
    assert {a["node_id"] for a in workers} == {cluster.head, cluster.worker}
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    # 16 images over 2 workers: 8 per shard, 4 // 2 = 2 per worker batch -> 4 steps.
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert (out / "exported_models" / "exported_last.pt").is_file()


def test_embed_survives_losing_the_worker_node(
    cluster: TwoNodes, tmp_path: Path, checkpoint: Path
) -> None:
    # Last in this module: the cluster has one node afterwards.
    root, out, kwargs = embed_job(tmp_path, checkpoint, 600)
    assert cluster.helper.stdin is not None
    cluster.helper.stdin.write(b"remove-worker-when-busy\n")
    cluster.helper.stdin.flush()
    seen = run_driver(cluster, "embed", kwargs)
    removed = json.loads((cluster.logs / "cluster.json.removed").read_text())
    assert removed["node_id"] == cluster.worker
    assert removed["time"] < seen["finished"], "the node was removed after the run"

    data = torch.load(out, weights_only=True)
    names = sorted(p.name for p in root.iterdir())
    assert data["filenames"] == names
    embedder = Embedder(load_checkpoint_entry(checkpoint))
    size = (EMBED_SIZE, EMBED_SIZE)
    for i in range(0, len(names), 50):  # a sample, computed in this process
        image = load_image((root / names[i]).read_bytes(), size)
        expected = embedder.embed(image[None])[0]
        np.testing.assert_allclose(data["embeddings"][i].numpy(), expected, atol=1e-5)
