"""One Gymnasium environment that is a whole task distribution: a new train task every reset.

Multi-task PPO learns a single policy for all train tasks from an ordinary environment stream.
The task families draw that stream themselves, with the keyword any SB3, CleanRL or RLlib user
passes (``gymnasium.make(id, resample_tasks=True)``), from the same family and split the
meta-learners train on; this module adds what SB3 needs on top and refuses any other env.
"""

from __future__ import annotations

from typing import Any

import gymnasium
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.monitor import Monitor

from metarobot.sampling import EnvFn
from metarobot.tasks import TaskFamily


def make_multitask_env(env_fn: EnvFn, family: TaskFamily) -> gymnasium.Env[Any, Any]:
    """A monitored, time-limited env over ``family``'s train tasks, for SB3 to learn on.

    Args:
        env_fn: Factory of one bare env of the family that draws a train task at every reset
            (``resample_tasks=True``); its ``horizon`` is the time limit (the batched samplers
            enforce it themselves, SB3 needs ``TimeLimit``).
        family: The family whose train tasks the env must draw.

    Raises:
        ValueError: The env has no positive ``horizon``, or does not draw a new train task of
            ``family`` at every reset: pretraining would see one task, or test tasks.
    """
    env = env_fn()
    horizon = getattr(env, "horizon", None)
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"{env} needs a positive int `horizon` (episode length), got {horizon!r}")
    unwrapped = env.unwrapped
    name = getattr(getattr(unwrapped, "family", None), "name", None)
    resample, split = (
        getattr(unwrapped, "resample_tasks", None),
        getattr(unwrapped, "task_split", None),
    )
    if (name, resample, split) != (family.name, True, "train"):
        raise ValueError(
            f"multi-task pretraining needs envs of {family.name} that draw a train task at every "
            f"reset (made with resample_tasks=True, task_split='train'), got an env of family "
            f"{name} with resample_tasks={resample!r}, task_split={split!r}"
        )
    return Monitor(TimeLimit(env, max_episode_steps=horizon))
