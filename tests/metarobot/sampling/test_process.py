"""The process backends: the same episodes as in-process, and workers that fail loudly."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import LocalSampler, Sampler
from metarobot.tasks import Task
from tests.metarobot.sampling.tiny import (
    AGREEMENT_CASES,
    PROCESS_BACKENDS,
    TASKS,
    TinyEnv,
    assert_backends_agree,
    assert_identical,
    task_params,
    tiny_task,
)


@pytest.mark.parametrize(("tasks", "episodes_per_task", "horizon"), AGREEMENT_CASES)
def test_local_and_process_agree_bit_for_bit(
    local: Sampler,
    process: Sampler,
    policy: GaussianMLPPolicy,
    tasks: list[Task],
    episodes_per_task: int,
    horizon: int | None,
) -> None:
    assert_backends_agree(local, process, policy, tasks, episodes_per_task, horizon)


def test_worker_exception_is_reported_and_sampler_survives(
    process: Sampler, policy: GaussianMLPPolicy
) -> None:
    tasks = [TASKS[0], tiny_task(1, 0.0, raise_at=2)]
    with pytest.raises(RuntimeError, match="tiny env refuses this step") as info:
        process.sample(tasks, task_params(policy, 2), episodes_per_task=2, seed=0)
    assert isinstance(info.value.__cause__, ValueError)
    episodes = process.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)
    assert episodes.num_tasks == 4


@pytest.mark.parametrize("backend", PROCESS_BACKENDS)
def test_dead_worker_raises_instead_of_hanging(backend: Any, policy: GaussianMLPPolicy) -> None:
    tasks = [TASKS[0], tiny_task(1, 0.0, crash_at=2)]
    sampler = backend(TinyEnv, policy, workers=2)
    with pytest.raises(RuntimeError, match=r"worker 1 .* died with exit code 3"):
        sampler.sample(tasks, task_params(policy, 2), episodes_per_task=1, seed=0)
    with pytest.raises(RuntimeError, match="closed"):
        sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)
    sampler.close()


@pytest.mark.parametrize("family", ["PointNav2D", "HalfCheetahVel"])
def test_real_families_agree_across_backends(family: str) -> None:
    envs = pytest.importorskip("envs")
    if family not in envs.FAMILIES:
        pytest.skip(f"envs has no {family} yet")
    env_fn = functools.partial(envs.make, family)
    tasks = envs.get_family(family).sample_tasks(3, seed=0)
    probe = env_fn()
    policy = GaussianMLPPolicy(probe.observation_space.shape[0], probe.action_space.shape[0])
    params = task_params(policy, 3)  # type: ignore[arg-type]
    with LocalSampler(env_fn, policy) as local:
        expected = local.sample(tasks, params, episodes_per_task=2, seed=3, horizon=40)
        for backend in PROCESS_BACKENDS:
            with backend(env_fn, policy, 2) as process:
                assert_identical(expected, process.sample(tasks, params, 2, seed=3, horizon=40))
    assert expected.masks[:, :, 0].eq(1).all()
    assert any(key.startswith("reward_") for key in expected.infos)
