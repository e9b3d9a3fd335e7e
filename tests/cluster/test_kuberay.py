"""The KubeRay manifests: the fields the ray.io/v1 CRDs require, and sound Pod specs.

RayJob entrypoints are checked as ``lightly-train`` commands (cluster_files.py) that fit
the GPUs of the job's cluster.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import ray
import yaml
from ray.runtime_env import RuntimeEnv

from lightly_train.errors import LightlyTrainError
from tests.cluster.cluster_files import (
    CLUSTER,
    GPU,
    KUBERAY,
    SHARED,
    check_command,
    load,
)

# Fields of the ray.io/v1 types (KubeRay >= 1.5.1: authOptions) these manifests may use;
# a misspelt field is pruned by the API server, or rejected by `kubectl apply`.
RAYJOB_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "entrypoint", "entrypointNumCpus",
    "entrypointNumGpus", "entrypointResources", "jobId", "metadata",
    "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode",
    "submitterConfig", "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished",
}  # fmt: skip
CLUSTER_FIELDS = {
    "authOptions", "autoscalerOptions", "enableInTreeAutoscaling",
    "headGroupSpec", "headServiceAnnotations", "rayVersion", "suspend",
    "workerGroupSpecs",
}  # fmt: skip
HEAD_FIELDS = {"enableIngress", "rayStartParams", "serviceType", "template"}
WORKER_FIELDS = {
    "groupName", "maxReplicas", "minReplicas", "numOfHosts", "rayStartParams",
    "replicas", "scaleStrategy", "suspend", "template",
}  # fmt: skip


def check_pod(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks a pod template; returns its containers."""
    spec = template["spec"]
    containers = spec["containers"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert containers and len(volumes) == len(spec.get("volumes", []))
    for container in containers:
        assert container["name"] and container["image"]
        assert container["resources"]["limits"] and container["resources"]["requests"]
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        assert set(mounts) <= set(volumes), "a volumeMount names no volume"
        shared = [n for n, p in mounts.items() if PurePosixPath(p) == SHARED]
        assert shared, f"{container['name']} does not mount {SHARED}"
        claim = volumes[shared[0]]["persistentVolumeClaim"]["claimName"]
        assert claim == load(CLUSTER / "kuberay" / "pvc.yaml")["metadata"]["name"]
    return containers


def check_cluster_spec(spec: dict[str, Any]) -> int:
    """Checks a RayClusterSpec; returns the GPUs of its workers at their replicas."""
    assert set(spec) <= CLUSTER_FIELDS, set(spec) - CLUSTER_FIELDS
    assert set(spec["headGroupSpec"]) <= HEAD_FIELDS
    assert all(set(group) <= WORKER_FIELDS for group in spec["workerGroupSpecs"])
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head runs no work
    for container in check_pod(head["template"]):
        assert GPU not in container["resources"]["limits"]
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    gpus = 0
    for group in groups:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        per_pod = sum(
            int(c["resources"]["limits"].get(GPU, 0))
            for c in check_pod(group["template"])
        )
        if per_pod:
            tolerations = group["template"]["spec"]["tolerations"]
            assert any(t["key"] == GPU for t in tolerations)
            assert all(
                c["resources"]["requests"].get(GPU) == c["resources"]["limits"][GPU]
                for c in group["template"]["spec"]["containers"]
                if GPU in c["resources"]["limits"]
            )
        gpus += per_pod * group["replicas"]
    assert gpus > 0
    return gpus


def check_manifest(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
    if doc["kind"] == "RayCluster":
        check_cluster_spec(doc["spec"])
        return
    assert doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert set(spec) <= RAYJOB_FIELDS, set(spec) - RAYJOB_FIELDS
    assert spec["shutdownAfterJobFinishes"] is True
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML", "{}"))
    RuntimeEnv(**runtime_env)  # raises on wrongly typed fields
    assert set(runtime_env) <= RuntimeEnv.known_fields
    gpus = check_cluster_spec(spec["rayClusterSpec"])
    config = check_command(shlex.split(spec["entrypoint"]))
    # A RayJob's cluster has a fixed size: the job must fit into its GPUs.
    assert spec["rayClusterSpec"].get("enableInTreeAutoscaling") is False
    assert config.accelerator == "gpu"
    nodes = getattr(config, "num_nodes", 1)
    assert config.devices != "auto" and config.devices * nodes <= gpus


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifest(path: Path) -> None:
    check_manifest(load(path))


def test_kuberay_has_a_cluster_and_both_jobs() -> None:
    kinds = sorted(
        (load(p)["kind"], shlex.split(load(p)["spec"].get("entrypoint", "-"))[1:2])
        for p in KUBERAY
    )
    assert kinds == [("RayCluster", []), ("RayJob", ["embed"]), ("RayJob", ["train"])]


def test_kuberay_shared_volume_is_read_write_many() -> None:
    pvc = load(CLUSTER / "kuberay" / "pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


def _workers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    return spec["workerGroupSpecs"]


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return _workers(doc)[0]["template"]["spec"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: _pod(d)["volumes"][0].update(name="other"),
        lambda d: _pod(d)["containers"][0]["resources"]["limits"].pop(GPU),
        lambda d: _pod(d).pop("tolerations"),
        lambda d: _workers(d)[0].update(minReplicas=99),
        lambda d: _workers(d)[0]["rayStartParams"].update({"num-gpus": 1}),
        lambda d: d["spec"].update(shutdownAfterJobFinishes=False),
        lambda d: d["spec"].update(shutdownAfterJobFinish=True),
        lambda d: d["spec"]["rayClusterSpec"].update(rayVersion="2.9.0"),
        lambda d: d["spec"].update(runtimeEnvYAML="env_vars: {A: 1}"),
        lambda d: d["spec"].update(entrypoint="lightly-train embed out=x.pth"),
        lambda d: d["spec"].update(
            entrypoint=d["spec"]["entrypoint"].replace("devices=4", "devices=64")
        ),
    ],
)
def test_kuberay_checks_catch_mistakes(mutate: Callable[[dict], Any]) -> None:
    doc = load(CLUSTER / "kuberay" / "rayjob-embed.yaml")
    mutate(doc)
    with pytest.raises((AssertionError, KeyError, LightlyTrainError, TypeError)):
        check_manifest(doc)
