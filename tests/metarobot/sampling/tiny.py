"""A tiny deterministic env, and the helpers that compare samplers on it."""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import numpy as np
import torch

from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.sampling import ProcessEnvSampler, ProcessSliceSampler, Sampler
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
    info_keys = ("applied_0", "applied_1", "late", "reward_dist", "success")

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


PROCESS_BACKENDS = [ProcessEnvSampler, ProcessSliceSampler]


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
