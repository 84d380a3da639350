"""Tests of the batched samplers against a tiny deterministic env (and the real families)."""

from __future__ import annotations

import functools
import os
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from metarobot.agent import Adaptation
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.sampling import (
    SAMPLER_BACKENDS,
    LocalSampler,
    NonFiniteParametersError,
    ProcessRolloutSampler,
    ProcessSampler,
    Sampler,
    episode_seeds,
    make_sampler,
)
from metarobot.tasks import Task

HORIZON = 8
BOUND = 0.5


def tiny_task(index: int, goal: float, **events: float) -> Task:
    """A task of the tiny env; ``events`` (``crash_at``, ``raise_at``, ``unstable_at``) name a
    step at which the env misbehaves."""
    params = {"goal": goal, "crash_at": -1.0, "raise_at": -1.0, "unstable_at": -1.0, **events}
    return Task("Tiny", "train", index, tuple(sorted(params.items())))


class TinyEnv(gymnasium.Env):
    """A 1-D walk to a goal whose episode length (3..11 steps) is drawn at reset."""

    horizon = HORIZON

    def __init__(self) -> None:
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.action_space = gymnasium.spaces.Box(-BOUND, BOUND, (2,), np.float32)
        self.task: Task | None = None

    def set_task(self, task: Task) -> None:
        self.task = task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x = float(self.np_random.normal())
        self.length = int(self.np_random.integers(3, 12))
        self.t = 0
        return self._obs(), {"task": self.task}

    def _obs(self) -> np.ndarray:
        assert self.task is not None
        return np.array([self.x, self.t, self.task["goal"], self.length], dtype=np.float64)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self.task is not None
        assert action.shape == (2,) and action.dtype == np.float32
        self.t += 1
        if self.t == self.task["crash_at"]:
            os._exit(3)
        if self.t == self.task["raise_at"]:
            raise ValueError("tiny env refuses this step")
        if self.t == self.task["unstable_at"]:
            return self._obs(), 0.0, False, True, {"unstable": True}
        self.x += float(action[0]) - 0.5 * float(action[1])
        distance = abs(self.x - float(self.task["goal"]))  # type: ignore[arg-type]
        info: dict[str, Any] = {
            "reward_dist": -distance,
            "success": distance < 0.25,
            "applied_0": action[0],
            "applied_1": np.float64(action[1]),
            "unstable": False,
            "task": self.task,
            "name": "tiny",
            "vector": np.ones(3),
        }
        if self.t >= 4:
            info["late"] = 1  # a key that first appears mid-episode
        return self._obs(), -distance, self.t >= self.length, False, info


def make_policy() -> GaussianMLPPolicy:
    torch.manual_seed(0)
    return GaussianMLPPolicy(4, 2, hidden_sizes=(16,), init_std=1.0)


def rows(params: Params, lo: int, hi: int) -> Params:
    return {name: value[lo:hi] for name, value in params.items()}


def task_params(policy: GaussianMLPPolicy, num_tasks: int) -> Params:
    """Different parameters per task, so that mixing tasks up would show."""
    generator = torch.Generator().manual_seed(1)
    base = expand_params({k: v.detach() for k, v in policy.meta_parameters().items()}, num_tasks)
    return {k: v + 0.3 * torch.randn(v.shape, generator=generator) for k, v in base.items()}


TASKS = [tiny_task(i, goal) for i, goal in enumerate([-1.0, 0.0, 0.5, 2.0])]

FIELDS = ("observations", "actions", "rewards", "masks", "log_probs", "unstable")


def assert_identical(a: Episodes, b: Episodes) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name
    assert list(a.infos) == list(b.infos)
    for key in a.infos:
        assert torch.equal(a.infos[key], b.infos[key]), key


@pytest.fixture(scope="module")
def policy() -> GaussianMLPPolicy:
    return make_policy()


@pytest.fixture(scope="module")
def local(policy: GaussianMLPPolicy) -> Any:
    with LocalSampler(TinyEnv, policy) as sampler:
        yield sampler


PROCESS_BACKENDS = [ProcessSampler, ProcessRolloutSampler]


@pytest.fixture(scope="module", params=PROCESS_BACKENDS)
def process(request: pytest.FixtureRequest, policy: GaussianMLPPolicy) -> Any:
    with request.param(TinyEnv, policy, workers=2) as sampler:
        yield sampler


def test_shapes_dtypes_and_infos(local: Sampler, policy: GaussianMLPPolicy) -> None:
    episodes = local.sample(TASKS, task_params(policy, 4), episodes_per_task=3, seed=0)
    n, e, t = 4, 3, HORIZON
    assert episodes.observations.shape == (n, e, t, 4)
    assert episodes.actions.shape == (n, e, t, 2)
    for name in ("rewards", "masks", "log_probs"):
        assert getattr(episodes, name).shape == (n, e, t)
    assert episodes.unstable.shape == (n, e) and episodes.unstable.dtype == torch.bool
    for name in FIELDS[:-1]:
        assert getattr(episodes, name).dtype == torch.float32
    # Numeric scalars only (bools become floats); "unstable" has its own field.
    assert list(episodes.infos) == ["applied_0", "applied_1", "late", "reward_dist", "success"]
    for value in episodes.infos.values():
        assert value.shape == (n, e, t) and value.dtype == torch.float32
    assert set(episodes.infos["success"].unique().tolist()) <= {0.0, 1.0}
    assert local.last_stats is not None
    assert local.last_stats.env_steps == int(episodes.masks.sum())


def test_episodes_replay_in_a_fresh_env(local: Sampler, policy: GaussianMLPPolicy) -> None:
    """Masks end at termination or the horizon, padding is zero, and each stored episode is
    what the env gives for its seed and the clipped stored actions."""
    episodes = local.sample(TASKS, task_params(policy, 4), episodes_per_task=3, seed=7)
    seeds = episode_seeds(7, 4, 3)
    lengths = []
    for n, task in enumerate(TASKS):
        for e in range(3):
            env = TinyEnv()
            env.set_task(task)
            obs, _ = env.reset(seed=int(seeds[n, e]))
            length = min(env.length, HORIZON)
            lengths.append(length)
            mask = episodes.masks[n, e]
            assert mask[:length].eq(1).all() and mask[length:].eq(0).all()
            for t in range(length):
                assert torch.equal(episodes.observations[n, e, t], torch.tensor(obs).float())
                raw = episodes.actions[n, e, t].numpy()
                obs, reward, *_ = env.step(np.clip(raw, -BOUND, BOUND))
                assert episodes.rewards[n, e, t].item() == np.float32(reward)
            pad = slice(length, None)
            for name in ("observations", "actions", "rewards", "log_probs"):
                assert getattr(episodes, name)[n, e, pad].eq(0).all(), name
            for key, value in episodes.infos.items():
                assert value[n, e, pad].eq(0).all(), key
    assert min(lengths) < HORIZON == max(lengths)  # both ways of ending are exercised
    late = episodes.infos["late"]
    assert late[..., :3].eq(0).all() and torch.equal(late[..., 3:], episodes.masks[..., 3:])


def test_actions_clipped_for_env_but_stored_raw(local: Sampler, policy: GaussianMLPPolicy) -> None:
    episodes = local.sample(TASKS, task_params(policy, 4), episodes_per_task=4, seed=1)
    real = episodes.masks > 0
    raw = episodes.actions[real]
    assert raw.abs().max() > BOUND  # the policy's std makes many actions leave the bounds
    applied = torch.stack([episodes.infos["applied_0"], episodes.infos["applied_1"]], dim=-1)
    assert torch.equal(applied[real], raw.clamp(-BOUND, BOUND))


def test_log_probs_are_the_policys(local: Sampler, policy: GaussianMLPPolicy) -> None:
    params = task_params(policy, 4)
    episodes = local.sample(TASKS, params, episodes_per_task=3, seed=2)
    with torch.no_grad():
        dist = policy.batched_distribution(episodes.observations, params)
        expected = dist.log_prob(episodes.actions).sum(-1) * episodes.masks
    torch.testing.assert_close(episodes.log_probs, expected, rtol=1e-5, atol=1e-5)


def test_same_seed_same_episodes_other_seed_others(
    local: Sampler, policy: GaussianMLPPolicy
) -> None:
    params = task_params(policy, 4)
    first = local.sample(TASKS, params, episodes_per_task=2, seed=11)
    local.sample(TASKS[:2], params=task_params(policy, 2), episodes_per_task=5, seed=3)
    assert_identical(first, local.sample(TASKS, params, episodes_per_task=2, seed=11))
    other = local.sample(TASKS, params, episodes_per_task=2, seed=12)
    assert not torch.equal(first.observations[:, :, 0], other.observations[:, :, 0])
    assert not torch.equal(first.actions[:, :, 0], other.actions[:, :, 0])
    # Resets and action noise depend only on the seed and the episode's position.
    alone = local.sample(TASKS[:1], rows(params, 0, 1), episodes_per_task=2, seed=11)
    for name in FIELDS:
        assert torch.equal(getattr(alone, name)[0], getattr(first, name)[0]), name


def test_slices_with_their_offsets_equal_the_whole_batch() -> None:
    """What lets the Ray backend sample a batch in pieces, and re-sample one piece alone.

    Layers of 50 units and 3 episodes put most tasks' rows at offsets that are not multiples
    of 64 bytes, where the matrix kernels round differently unless the slice is laid out as in
    the whole batch."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(4, 2, hidden_sizes=(50, 50))
    tasks = [tiny_task(i, 0.1 * i) for i in range(19)]
    params = task_params(policy, len(tasks))
    with LocalSampler(TinyEnv, policy) as sampler:
        whole = sampler.sample(tasks, params, episodes_per_task=3, seed=21)
        for lo, hi in [(0, 1), (1, 2), (3, 7), (5, 19), (17, 19)]:
            piece = sampler.sample(tasks[lo:hi], rows(params, lo, hi), 3, seed=21, first_task=lo)
            for name in FIELDS:
                assert torch.equal(getattr(piece, name), getattr(whole, name)[lo:hi]), name


def test_forward_pass_is_single_threaded_and_restores_threads() -> None:
    """With two threads, one task alone (64-unit layers, 5 rows) takes another matmul split
    than the same task in a batch, and its actions differ in the last bits; one thread agrees."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(4, 2, hidden_sizes=(64, 64))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with LocalSampler(TinyEnv, policy) as sampler:
            params = task_params(policy, 4)
            whole = sampler.sample(TASKS, params, episodes_per_task=5, seed=8)
            alone = sampler.sample(TASKS[3:], rows(params, 3, 4), 5, seed=8, first_task=3)
        assert torch.equal(alone.actions[0], whole.actions[3])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_non_finite_parameters_are_refused(local: Sampler, policy: GaussianMLPPolicy) -> None:
    params = task_params(policy, 4)
    params["log_std"] = params["log_std"].clone()
    params["log_std"][2, 0] = float("nan")
    with pytest.raises(NonFiniteParametersError, match=r"params\['log_std'\].*tasks \[2\]"):
        local.sample(TASKS, params, episodes_per_task=1, seed=0)


AGREEMENT_CASES = [
    (TASKS, 3, None),  # 12 envs over 2 workers
    (TASKS[:3], 3, 5),  # uneven split, shorter horizon
    (TASKS[:1], 1, None),  # one env: a worker with nothing to do
    (TASKS * 4, 6, 12),  # more envs than before: the pools grow
    ([tiny_task(0, 1.0, unstable_at=2), TASKS[1], tiny_task(2, 0.0, unstable_at=5)], 3, None),
]
"""``(tasks, episodes_per_task, horizon)`` on which every backend must agree with local."""


def assert_backends_agree(
    local: Sampler,
    other: Sampler,
    policy: GaussianMLPPolicy,
    tasks: list[Task],
    episodes_per_task: int,
    horizon: int | None,
) -> None:
    params = task_params(policy, len(tasks))
    expected = local.sample(tasks, params, episodes_per_task, seed=5, horizon=horizon)
    actual = other.sample(tasks, params, episodes_per_task, seed=5, horizon=horizon)
    assert_identical(expected, actual)
    assert actual.horizon == (HORIZON if horizon is None else horizon)
    assert other.last_stats is not None
    assert other.last_stats.env_steps == int(expected.masks.sum())


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


def test_unstable_episodes_are_flagged_and_cut(local: Sampler, policy: GaussianMLPPolicy) -> None:
    tasks = [tiny_task(0, 1.0, unstable_at=2), TASKS[1]]
    episodes = local.sample(tasks, task_params(policy, 2), episodes_per_task=3, seed=4)
    assert episodes.unstable[0].all() and not episodes.unstable[1].any()
    assert episodes.masks[0, :, :2].eq(1).all() and episodes.masks[0, :, 2:].eq(0).all()
    assert episodes.rewards[0, :, 1].eq(0).all()  # the unstable step itself is real but empty


def test_make_sampler_rejects_unknown_backend(policy: GaussianMLPPolicy) -> None:
    assert SAMPLER_BACKENDS == ("local", "process", "ray")
    with pytest.raises(ValueError, match=r"unknown sampler backend 'dask'.*local, process, ray"):
        make_sampler("dask", TinyEnv, policy, workers=1)
    with pytest.raises(ValueError, match="workers must be 1"):
        make_sampler("local", TinyEnv, policy, workers=2)
    with make_sampler("local", TinyEnv, policy) as sampler:
        assert isinstance(sampler, LocalSampler)
    # A CPU policy runs in the workers, next to the environments (for CUDA, see below).
    with make_sampler("process", TinyEnv, policy, workers=2) as sampler:
        assert isinstance(sampler, ProcessRolloutSampler)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_process_backend_runs_a_cuda_policy_on_the_driver() -> None:
    policy = make_policy().cuda()
    with make_sampler("process", TinyEnv, policy, workers=2) as sampler:
        assert isinstance(sampler, ProcessSampler)
        params = {name: value.cuda() for name, value in task_params(make_policy(), 4).items()}
        episodes = sampler.sample(TASKS, params, episodes_per_task=2, seed=0)
    assert episodes.observations.is_cuda and episodes.masks.sum() > 0


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


def test_environments_are_created_once_and_reused(policy: GaussianMLPPolicy) -> None:
    created: list[TinyEnv] = []

    def env_fn() -> TinyEnv:
        created.append(TinyEnv())
        return created[-1]

    with LocalSampler(env_fn, policy) as sampler:
        sampler.sample(TASKS[:2], task_params(policy, 2), episodes_per_task=2, seed=0)
        assert len(created) == 4
        sampler.sample(TASKS[2:], task_params(policy, 2), episodes_per_task=1, seed=0)
        assert len(created) == 4
        sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=2, seed=0)
        assert len(created) == 8
    for backend in PROCESS_BACKENDS:
        with pytest.raises(ValueError, match="cannot be pickled"):
            backend(env_fn, policy)


def test_closed_sampler_refuses_to_sample(policy: GaussianMLPPolicy) -> None:
    sampler = LocalSampler(TinyEnv, policy)
    sampler.close()
    sampler.close()
    with pytest.raises(RuntimeError, match="closed"):
        sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)


def test_worker_exception_is_reported_and_sampler_survives(
    process: Sampler, policy: GaussianMLPPolicy
) -> None:
    tasks = [TASKS[0], tiny_task(1, 0.0, raise_at=2)]
    with pytest.raises(RuntimeError, match="tiny env refuses this step") as info:
        process.sample(tasks, task_params(policy, 2), episodes_per_task=2, seed=0)
    assert isinstance(info.value.__cause__, ValueError)
    episodes = process.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)
    assert episodes.num_tasks == 4


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
