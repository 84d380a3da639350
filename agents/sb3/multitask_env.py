"""One Gymnasium environment that is a whole task distribution: a new train task every reset.

Multi-task PPO learns a single policy for all train tasks from an ordinary environment stream;
drawing the task at reset, from the same family and split the meta-learners train on, is what
turns a family's env into that stream without SB3 knowing about tasks.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.monitor import Monitor

from metarobot.sampling import EnvFn
from metarobot.tasks import Split, Task, TaskFamily


class TaskResampling(gymnasium.Wrapper[Any, Any, Any, Any]):
    """Draw a task of ``split`` at every reset and pass it on as ``options={"task": task}``.

    Tasks come from the wrapper's own generator, re-seeded whenever ``reset`` gets a seed, so
    a seeded vectorized env replays the same task sequence. Any other reset options are kept.

    Args:
        env: A task family's env (it takes ``options={"task": ...}`` at reset).
        family: The family to draw tasks from.
        split: Which split to draw from; ``"train"`` for pretraining.
    """

    def __init__(self, env: gymnasium.Env[Any, Any], family: TaskFamily, split: Split = "train"):
        super().__init__(env)
        self.family = family
        self.split: Split = split
        self._rng = np.random.default_rng()
        self.task: Task | None = None
        """The task of the current episode."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset into a freshly drawn task."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        draw = int(self._rng.integers(np.iinfo(np.int64).max))
        self.task = self.family.sample_tasks(1, self.split, seed=draw)[0]
        return self.env.reset(seed=seed, options={**(options or {}), "task": self.task})


def make_multitask_env(env_fn: EnvFn, family: TaskFamily) -> gymnasium.Env[Any, Any]:
    """A monitored, time-limited env over ``family``'s train tasks, for SB3 to learn on.

    Args:
        env_fn: Factory of one bare env of the family; its ``horizon`` is the time limit (the
            batched samplers enforce it themselves, SB3 needs ``TimeLimit``).
        family: The family whose train tasks are drawn.
    """
    env = env_fn()
    horizon = getattr(env, "horizon", None)
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"{env} needs a positive int `horizon` (episode length), got {horizon!r}")
    return Monitor(TimeLimit(TaskResampling(env, family), max_episode_steps=horizon))
