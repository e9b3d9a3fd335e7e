import pytest

from lightly_train.errors import LightlyTrainError
from lightly_train.training.plan import plan_workers


def test_one_cpu_worker_on_a_laptop() -> None:
    plan = plan_workers("auto", "auto", 1, "auto", "32-true", {"CPU": 2.0})
    assert (plan.accelerator, plan.num_workers, plan.cpus_per_worker) == ("cpu", 1, 2)
    # Loading in the training process, both CPUs as torch threads.
    assert (plan.loader_workers, plan.torch_threads) == (0, 2)


def test_big_cpu_worker_splits_its_cpus_between_loaders_and_threads() -> None:
    plan = plan_workers("cpu", "auto", 1, "auto", "32-true", {"CPU": 16.0})
    assert (plan.cpus_per_worker, plan.loader_workers, plan.torch_threads) == (
        16,
        4,
        12,
    )
    two = plan_workers("cpu", "auto", 1, 2, "32-true", {"CPU": 16.0})
    assert (two.loader_workers, two.torch_threads) == (2, 14)


def test_cpu_workers_fit_their_nodes() -> None:
    # 3 nodes x 3 CPUs, one worker on each of 2 nodes: 3 CPUs each, not 9 // 2.
    plan = plan_workers("cpu", 1, 2, "auto", "32-true", {"CPU": 9.0}, nodes=[3, 3, 3])
    assert (plan.num_workers, plan.cpus_per_worker) == (2, 3)
    with pytest.raises(LightlyTrainError, match="a node has only 3"):
        plan_workers("cpu", 4, 2, "auto", "32-true", {"CPU": 9.0}, nodes=[3, 3, 3])


def test_gpu_workers_one_per_gpu() -> None:
    plan = plan_workers("auto", "auto", 2, "auto", "bf16-mixed", {"CPU": 64, "GPU": 8},
                        nodes=[32, 32])  # fmt: skip
    assert (plan.accelerator, plan.num_workers) == ("gpu", 8)
    # Each GPU worker reserves its node's CPUs / GPUs and loads with all but one.
    assert (plan.cpus_per_worker, plan.loader_workers, plan.torch_threads) == (8, 7, 1)


def test_gpu_node_16_cores_one_gpu() -> None:
    plan = plan_workers("gpu", "auto", 1, "auto", "bf16-mixed", {"CPU": 16, "GPU": 1})
    assert (plan.cpus_per_worker, plan.loader_workers) == (16, 15)


def test_too_many_cpu_workers() -> None:
    with pytest.raises(LightlyTrainError, match="Use devices=2 or fewer"):
        plan_workers("cpu", 3, 1, "auto", "32-true", {"CPU": 2.0})


def test_gpu_workers_beyond_a_ray_that_cannot_grow() -> None:
    cluster = {"CPU": 16.0, "GPU": 2.0}
    with pytest.raises(LightlyTrainError, match="asks for 4 GPUs but .* has 2,"):
        plan_workers("gpu", 4, 1, "auto", "32-true", cluster, can_grow=False)
    with pytest.raises(LightlyTrainError, match="has no GPUs, and none can be added"):
        plan_workers("gpu", 1, 1, "auto", "32-true", {"CPU": 8.0}, can_grow=False)
    assert plan_workers("gpu", 4, 1, "auto", "32-true", cluster).num_workers == 4
