"""The Ray backend on a local Ray: same episodes as in-process, actors lost and replaced.

Ray starts once for the module (a few seconds); the tests share one 2-actor sampler whose
environments can kill their own actor on demand, and training runs on the ray backend.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch

import metarobot.run.training as training
from metarobot.agent import Adaptation
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy
from metarobot.run.config import RunConfig
from metarobot.sampling import (
    LocalSampler,
    NonFiniteParametersError,
    RaySampler,
    Sampler,
    make_sampler,
)
from metarobot.sampling.ray_backend import RaySamplerWarning
from tests.metarobot.run.test_training import TINY, final_params
from tests.metarobot.sampling.tiny import (
    AGREEMENT_CASES,
    TASKS,
    TinyEnv,
    assert_backends_agree,
    assert_identical,
    task_params,
    tiny_task,
)

pytestmark = pytest.mark.ray


class KillableTinyEnv(TinyEnv):
    """``TinyEnv`` whose second step SIGKILLs its own process if ``marker`` exists.

    The first env to get there removes the marker, so exactly one actor dies, once, mid-call.
    """

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t == 1:
            try:
                os.remove(self.marker)
            except FileNotFoundError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action)


def nudge(episodes: Episodes, previous: Adaptation[int | None]) -> Adaptation[int]:
    """A per-task inner step for the tests: shift every parameter by the task's mean return
    times the step's number, counted in the state (so the state must reach the next step)."""
    step = (previous.state or 0) + 1
    shift = 0.01 * step * episodes.episode_returns().mean(dim=1)
    shifted = {k: v + shift.view(-1, *[1] * (v.dim() - 1)) for k, v in previous.params.items()}
    return Adaptation(shifted, step)


def diverge(episodes: Episodes, previous: Adaptation[Any]) -> Adaptation[Any]:
    return Adaptation({k: v * float("nan") for k, v in previous.params.items()}, None)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    # Four logical CPUs on two cores: the shared sampler's two actors, and two for the training
    # runs' own samplers.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def policy() -> GaussianMLPPolicy:
    torch.manual_seed(0)
    return GaussianMLPPolicy(4, 2, hidden_sizes=(50, 50))


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray") / "kill-an-actor"


@pytest.fixture(scope="module")
def remote(ray_session: None, policy: GaussianMLPPolicy, marker: Path) -> Iterator[RaySampler]:
    with RaySampler(functools.partial(KillableTinyEnv, str(marker)), policy, workers=2) as sampler:
        yield sampler


@pytest.fixture(scope="module")
def local(policy: GaussianMLPPolicy) -> Iterator[Sampler]:
    with LocalSampler(TinyEnv, policy) as sampler:
        yield sampler


@pytest.mark.parametrize(
    ("tasks", "episodes_per_task", "horizon"),
    [*AGREEMENT_CASES, ([tiny_task(i, 0.1 * i) for i in range(19)], 3, None)],
)
def test_ray_episodes_equal_local_episodes(
    remote: Sampler,
    local: Sampler,
    policy: GaussianMLPPolicy,
    tasks: list[Any],
    episodes_per_task: int,
    horizon: int | None,
) -> None:
    """The policy's 50-unit layers put most slices' rows at offsets that are not multiples of
    64 bytes (see LockstepSampler), and 19 tasks give uneven slices."""
    assert_backends_agree(local, remote, policy, tasks, episodes_per_task, horizon)


def test_killed_actor_is_replaced_and_the_results_are_unchanged(
    remote: RaySampler, local: Sampler, policy: GaussianMLPPolicy, marker: Path
) -> None:
    params = task_params(policy, 4)
    expected = local.sample(TASKS, params, 3, seed=9)
    restarts = remote.restarts
    marker.touch()
    with pytest.warns(RaySamplerWarning, match=r"actor \d died .* again with the same seeds"):
        actual = remote.sample(TASKS, params, 3, seed=9)
    assert not marker.exists() and remote.restarts == restarts + 1
    assert_identical(expected, actual)
    assert_identical(expected, remote.sample(TASKS, params, 3, seed=9))  # the new actor


def test_adaptation_on_the_actors_equals_adaptation_here(
    remote: RaySampler, local: Sampler, policy: GaussianMLPPolicy
) -> None:
    params = task_params(policy, 4)
    seeds = [3, 4, 5]
    expected = local.sample_adaptation(TASKS, params, 2, seeds, nudge)
    central = remote.sample_adaptation(TASKS, params, 2, seeds, nudge)
    on_actors = remote.sample_adaptation(TASKS, params, 2, seeds, nudge, on_workers=True)
    for want, got, there in zip(expected, central, on_actors, strict=True):
        assert_identical(want, got)
        assert_identical(want, there)
    assert not torch.equal(expected[0].actions, expected[2].actions)
    with pytest.raises(ValueError, match="needs the 'ray' backend"):
        local.sample_adaptation(TASKS, params, 2, seeds, nudge, on_workers=True)


def test_actor_errors_reach_the_driver(remote: RaySampler, policy: GaussianMLPPolicy) -> None:
    tasks = [TASKS[0], tiny_task(1, 0.0, raise_at=2)]
    with pytest.raises(RuntimeError, match="tiny env refuses this step") as info:
        remote.sample(tasks, task_params(policy, 2), 2, seed=0)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(NonFiniteParametersError, match="tasks"):
        remote.sample_adaptation(TASKS, task_params(policy, 4), 1, [1, 2], diverge, on_workers=True)
    assert remote.sample(TASKS, task_params(policy, 4), 1, seed=0).num_tasks == 4


def test_actors_that_cannot_start_are_reported(
    ray_session: None, policy: GaussianMLPPolicy
) -> None:
    with pytest.raises(RuntimeError, match=r"did not start within 0\.5 s; each needs one CPU"):
        RaySampler(TinyEnv, policy, workers=8, start_timeout=0.5)
    with pytest.raises(RuntimeError, match=r"(?s)failed to start.*obs_dim=5 does not match"):
        RaySampler(TinyEnv, GaussianMLPPolicy(5, 2), workers=1)
    with make_sampler("ray", TinyEnv, policy, workers=1) as sampler:
        assert isinstance(sampler, RaySampler) and sampler.env_spec.obs_dim == 4


@pytest.mark.parametrize(
    ("agent", "agent_config"), [("maml", {}), ("reptile", {"num_inner_steps": 2})]
)
def test_training_on_ray_equals_local_training(
    ray_session: None, tmp_path: Path, agent: str, agent_config: dict[str, Any]
) -> None:
    """MAML's and Reptile's inner loops treat tasks independently, bit for bit, so adapting on
    the actors (one slice of the tasks each) gives the parameters of adapting all here."""
    config = RunConfig(**{**TINY.__dict__, "agent": agent, "iterations": 3})
    local = training.train(config, tmp_path / "local", agent_config, progress=False)
    expected = final_params(local)
    remote = RunConfig(**{**config.__dict__, "backend": "ray", "workers": 2, "adapt_on": "workers"})
    parts = training.train(remote, tmp_path / "ray", agent_config, progress=False)
    parts.close()
    got = final_params(parts)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)
