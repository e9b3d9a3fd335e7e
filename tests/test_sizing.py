"""How ``plan_actors`` sizes model actors and decode tasks for 2 to 64 CPUs, GPU
nodes and clusters of several nodes, and what it refuses."""

import pytest

from lightly_train.errors import LightlyTrainError
from lightly_train.sizing import Plan, plan_actors

NO_GPUS_HERE = (
    "Error: accelerator='gpu' but the local Ray started on this machine has no GPUs, "
    "and none can be added to it. Use accelerator='cpu' or 'auto', or connect to a "
    "cluster with GPUs (RAY_ADDRESS)."
)


def fits(plan: Plan, node_cpus: int, per_node: int) -> None:
    """The actors' torch threads cover the node; their reservations leave room for
    at least one decode task per CPU, so decoding never waits for a whole CPU."""
    assert per_node * plan.threads_per_actor == node_cpus
    left = node_cpus - per_node * plan.cpus_per_actor
    assert left > 0
    assert left >= node_cpus * plan.decode_cpus - 1e-9


def test_cpu_plan_on_two_cores_uses_both_for_the_model() -> None:
    plan = plan_actors("auto", "auto", "auto", "32-true", {"CPU": 2.0})
    assert plan == Plan(
        "cpu", num_actors=2, cpus_per_actor=0.875, threads_per_actor=1,
        gpus_per_actor=0, decode_tasks=2, decode_cpus=0.125,
    )  # fmt: skip
    fits(plan, 2, per_node=2)


def test_small_job_starts_one_actor_with_all_threads() -> None:
    plan = plan_actors("auto", "auto", "auto", "32-true", {"CPU": 2.0}, max_actors=1)
    assert (plan.num_actors, plan.threads_per_actor) == (1, 2)
    fits(plan, 2, per_node=1)


@pytest.mark.parametrize(
    ("cpus", "actors", "threads"), [(4, 4, 1), (8, 4, 2), (16, 4, 4), (64, 16, 4)]
)
def test_cpu_plan_scales_with_cpus(cpus: int, actors: int, threads: int) -> None:
    plan = plan_actors("cpu", "auto", "auto", "32-true", {"CPU": float(cpus)})
    assert (plan.accelerator, plan.num_actors, plan.threads_per_actor) == (
        "cpu", actors, threads,
    )  # fmt: skip
    fits(plan, cpus, per_node=actors)


def test_explicit_decode_tasks_are_kept() -> None:
    plan = plan_actors("cpu", "auto", 8, "32-true", {"CPU": 16.0, "GPU": 2.0})
    assert plan.accelerator == "cpu"
    assert plan.decode_tasks == 8


def test_cpu_plan_on_many_nodes_sizes_each_node() -> None:
    plan = plan_actors("cpu", "auto", "auto", "32-true", {"CPU": 32.0}, [16, 16])
    assert (plan.num_actors, plan.threads_per_actor) == (8, 4)
    fits(plan, 16, per_node=4)


def test_gpu_plan_one_actor_per_gpu() -> None:
    plan = plan_actors("auto", "auto", "auto", "32-true", {"CPU": 32.0, "GPU": 4.0})
    assert (plan.accelerator, plan.num_actors, plan.gpus_per_actor) == ("gpu", 4, 1)
    # Each GPU actor reserves one CPU; decode tasks take whole CPUs, the rest.
    assert (plan.cpus_per_actor, plan.decode_cpus) == (1, 1)
    two = plan_actors("gpu", 2, "auto", "32-true", {"CPU": 32.0, "GPU": 4.0})
    assert two.num_actors == 2


def test_gpu_requested_without_gpus() -> None:
    with pytest.raises(LightlyTrainError) as ex:
        plan_actors("gpu", "auto", "auto", "32-true", {"CPU": 8.0})
    assert str(ex.value) == (
        "accelerator='gpu' but the Ray cluster has no GPUs. Use accelerator='cpu' or "
        "'auto', add GPU nodes, or on an autoscaling cluster give the number of GPUs "
        "to wait for with devices=N."
    )


def test_explicit_gpus_wait_for_an_autoscaler() -> None:
    plan = plan_actors("gpu", 4, "auto", "bf16-mixed", {"CPU": 8.0})
    assert (plan.accelerator, plan.num_actors, plan.gpus_per_actor) == ("gpu", 4, 1)


def test_no_waiting_for_gpus_on_a_ray_that_cannot_grow() -> None:
    with pytest.raises(LightlyTrainError) as ex:
        plan_actors("gpu", 4, "auto", "bf16-mixed", {"CPU": 8.0}, can_grow=False)
    assert f"Error: {ex.value}" == NO_GPUS_HERE
    with pytest.raises(LightlyTrainError) as ex:
        plan_actors("gpu", 3, "auto", "bf16-mixed", {"CPU": 16.0, "GPU": 2.0},
                    can_grow=False)  # fmt: skip
    assert str(ex.value) == (
        "The job asks for 3 GPUs but the local Ray started on this machine has 2, "
        "and none can be added to it. Use devices=2 or devices='auto'."
    )
    plan = plan_actors("gpu", 2, "auto", "bf16-mixed", {"CPU": 16.0, "GPU": 2.0},
                       can_grow=False)  # fmt: skip
    assert plan.num_actors == 2


def test_gpu_node_16_cores() -> None:
    plan = plan_actors("auto", "auto", "auto", "bf16-mixed", {"CPU": 16.0, "GPU": 1.0})
    assert (plan.num_actors, plan.cpus_per_actor, plan.threads_per_actor) == (1, 1, 4)
    assert plan.decode_tasks is None  # as many as the 15 free CPUs allow


def test_more_cpu_actors_than_cpus_is_refused() -> None:
    with pytest.raises(LightlyTrainError, match="devices=2 or fewer"):
        plan_actors("cpu", 3, "auto", "32-true", {"CPU": 2.0})


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
    assert plan.cpus_per_actor < 2
    assert plan.threads_per_actor == 2
