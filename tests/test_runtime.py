import pytest

from lightly_train.errors import LightlyTrainError
from lightly_train.runtime import Plan, plan_actors


def test_cpu_plan_on_two_cores_leaves_a_cpu_for_decoding() -> None:
    plan = plan_actors("auto", "auto", "auto", "32-true", {"CPU": 2.0})
    assert plan == Plan("cpu", num_actors=1, cpus_per_actor=1, gpus_per_actor=0,
                        decode_tasks=None)  # fmt: skip


def test_cpu_plan_scales_with_cpus() -> None:
    plan = plan_actors("cpu", "auto", 8, "32-true", {"CPU": 16.0, "GPU": 2.0})
    assert (plan.accelerator, plan.num_actors, plan.cpus_per_actor) == ("cpu", 4, 2)
    assert plan.num_actors * plan.cpus_per_actor < 16
    assert plan.decode_tasks == 8


def test_gpu_plan_one_actor_per_gpu() -> None:
    plan = plan_actors("auto", "auto", "auto", "32-true", {"CPU": 32.0, "GPU": 4.0})
    assert (plan.accelerator, plan.num_actors, plan.gpus_per_actor) == ("gpu", 4, 1)
    two = plan_actors("gpu", 2, "auto", "32-true", {"CPU": 32.0, "GPU": 4.0})
    assert two.num_actors == 2


def test_gpu_requested_without_gpus() -> None:
    with pytest.raises(LightlyTrainError, match="no GPUs.*accelerator='cpu'"):
        plan_actors("gpu", "auto", "auto", "32-true", {"CPU": 8.0})


def test_explicit_gpus_wait_for_an_autoscaler() -> None:
    plan = plan_actors("gpu", 4, "auto", "bf16-mixed", {"CPU": 8.0})
    assert (plan.accelerator, plan.num_actors, plan.gpus_per_actor) == ("gpu", 4, 1)


def test_too_many_cpu_actors_would_deadlock() -> None:
    with pytest.raises(LightlyTrainError, match="devices=1 or fewer"):
        plan_actors("cpu", 2, "auto", "32-true", {"CPU": 2.0})


def test_one_cpu_is_not_enough() -> None:
    with pytest.raises(LightlyTrainError, match="at least 2"):
        plan_actors("cpu", "auto", "auto", "32-true", {"CPU": 1.0})


def test_16_mixed_needs_a_gpu() -> None:
    with pytest.raises(LightlyTrainError, match="16-mixed' needs a GPU"):
        plan_actors("auto", "auto", "auto", "16-mixed", {"CPU": 8.0})
    assert plan_actors("auto", "auto", "auto", "16-mixed", {"CPU": 8.0, "GPU": 1.0})


def test_cpu_actor_fits_on_one_node() -> None:
    # 4 nodes x 2 CPUs: one actor must not ask for 4 CPUs no node has.
    plan = plan_actors("cpu", 1, "auto", "32-true", {"CPU": 8.0}, nodes=[2, 2, 2, 2])
    assert plan.cpus_per_actor == 1
