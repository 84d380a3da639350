"""The checks every backend shares: arguments, closed samplers."""

from __future__ import annotations

from typing import Any

import pytest

from metarobot.agent import Adaptation
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import LocalSampler, Sampler
from tests.metarobot.sampling.tiny import (
    PROCESS_BACKENDS,
    TASKS,
    TinyEnv,
    assert_identical,
    task_params,
)


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


def test_adaptation_rounds_hand_each_step_what_the_step_before_returned(
    local: Sampler, policy: GaussianMLPPolicy
) -> None:
    params = task_params(policy, 4)
    received: list[Adaptation[Any]] = []

    def adapt(episodes: Episodes, previous: Adaptation[Any]) -> Adaptation[Any]:
        received.append(previous)
        return Adaptation({k: v + 0.1 for k, v in previous.params.items()}, len(received))

    rounds = local.sample_adaptation(TASKS, params, 2, [3, 4, 5], adapt)
    assert received[0].params is params and received[0].state is None
    assert [previous.state for previous in received[1:]] == [1]
    last = {k: v + 0.1 + 0.1 for k, v in params.items()}
    assert_identical(rounds[-1], local.sample(TASKS, last, 2, seed=5))
