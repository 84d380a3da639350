"""The checks every backend shares: arguments, closed samplers."""

from __future__ import annotations

import pytest

from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import LocalSampler, Sampler
from tests.metarobot.sampling.tiny import PROCESS_BACKENDS, TASKS, TinyEnv, task_params


def test_bad_arguments_raise_early(local: Sampler, policy: GaussianMLPPolicy) -> None:
    params = task_params(policy, 4)
    with pytest.raises(ValueError, match="leading task axis of size N=3"):
        local.sample(TASKS[:3], params, episodes_per_task=1, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        local.sample(TASKS, params, episodes_per_task=1, seed=-1)
    with pytest.raises(ValueError, match="episodes_per_task must be a positive int"):
        local.sample(TASKS, params, episodes_per_task=0, seed=0)
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        local.sample(TASKS, params, episodes_per_task=1, seed=0, horizon=0)
    with pytest.raises(ValueError, match="tasks is empty"):
        local.sample([], params, episodes_per_task=1, seed=0)
    with pytest.raises(ValueError, match="obs_dim=5 does not match"):
        LocalSampler(TinyEnv, GaussianMLPPolicy(5, 2))
    for backend in PROCESS_BACKENDS:
        with pytest.raises(ValueError, match="workers must be a positive int"):
            backend(TinyEnv, policy, workers=0)


def test_closed_sampler_refuses_to_sample(policy: GaussianMLPPolicy) -> None:
    sampler = LocalSampler(TinyEnv, policy)
    sampler.close()
    sampler.close()
    with pytest.raises(RuntimeError, match="closed"):
        sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)
