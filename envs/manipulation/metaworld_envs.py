"""Env classes of the Meta-World ML1 families; importing this module imports Meta-World.

Each env holds Meta-World's own environment and shares its compiled model and data, so Meta-World's
model, observation (39 values, frame-stacked, the goal zeroed unless ``observe_goal=True``),
dynamics and reward are untouched, while :class:`~envs.base.MetaEnv` supplies the contract of the
other families (typed tasks, input checks, unstable-physics flag). It holds rather than inherits
Meta-World's class: Meta-World's public ``compute_reward`` would make Stable-Baselines3 take the
env for a goal-conditioned one. What the adapter adds:

- tasks are typed records, applied through Meta-World's own ``set_task``;
- ``reset(seed=...)`` seeds the env (Meta-World ignores the seed) and jitters the hand's start
  by up to ``hand_noise`` metres (``hand_noise=0`` gives Meta-World's deterministic resets);
- ``info["reward_metaworld"]`` is Meta-World's reward, the one term that the reward sums, and
  ``info["success"]`` is a bool; Meta-World's diagnostics are kept as they are;
- the horizon is Meta-World's 500 steps unless given, and Meta-World's own step limit follows it.
"""

from __future__ import annotations

import pickle
from typing import Any, ClassVar

import numpy as np
from metaworld.envs.sawyer_pick_place_v3 import SawyerPickPlaceEnvV3
from metaworld.envs.sawyer_push_v3 import SawyerPushEnvV3
from metaworld.envs.sawyer_reach_v3 import SawyerReachEnvV3
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from metaworld.types import Task as MetaWorldTask

from envs.base import MetaEnv, StepResult
from envs.manipulation.metaworld_ml1 import METAWORLD_FAMILIES, MetaWorldFamily
from metarobot.tasks import Split, Task

_FAMILIES = {family.name: family for family in METAWORLD_FAMILIES}


class _MetaWorldML1(MetaEnv):
    """A Meta-World environment under ML1 tasks.

    Args:
        task: Initial task (optional: ``reset`` draws one when none is given).
        horizon: Episode length (default 500, Meta-World's).
        task_split: Split that tasks are drawn from (see :class:`~envs.base.MetaEnv`).
        resample_tasks: Draw a new task at every reset that is given none.
        observe_goal: Show the goal in the last 3 observation entries (Meta-World's MT setting).
        hand_noise: Half-width (m) of the uniform noise on the hand's start position.
        **kwargs: Passed to Meta-World's env (``render_mode``, ``width``, ``height``,
            ``camera_name``, ``camera_id``).
    """

    family: ClassVar[MetaWorldFamily]
    metaworld_class: ClassVar[type[SawyerXYZEnv]]

    def __init__(
        self,
        task: Task | None = None,
        horizon: int | None = None,
        task_split: Split = "train",
        resample_tasks: bool = False,
        observe_goal: bool = False,
        hand_noise: float = 0.005,
        **kwargs: Any,
    ):
        if hand_noise < 0:
            raise ValueError(f"hand_noise must be >= 0 (m), got {hand_noise}")
        inner = self.metaworld_class(**kwargs)
        self._inner = inner
        self._check_ranges()
        # The MujocoEnv state that MetaEnv and rendering use is Meta-World's own.
        self.model, self.data, self.frame_skip = inner.model, inner.data, inner.frame_skip
        self.metadata = inner.metadata
        self.render_mode, self.mujoco_renderer = inner.render_mode, inner.mujoco_renderer
        self.action_space = inner.action_space
        # Meta-World derives its observation space from its observability flag.
        inner._partially_observable = not observe_goal
        inner.__dict__.pop("sawyer_observation_space", None)
        self.observation_space = inner.observation_space = inner.sawyer_observation_space
        self._hand_start = np.array(inner.hand_init_pos, dtype=np.float64)
        self._hand_noise = hand_noise
        self._init_meta(task, horizon, task_split, resample_tasks)
        inner.max_path_length = self.horizon

    def _check_ranges(self) -> None:
        space = self._inner._random_reset_space
        low, high = [s.low for s in self.family.specs], [s.high for s in self.family.specs]
        if space is None or not (
            np.array_equal(space.low, low) and np.array_equal(space.high, high)
        ):
            raise RuntimeError(
                f"{self.family.name}: Meta-World's {self.family.env_name} now draws tasks from "
                f"{space}, not from [{low}, {high}] as this adapter declares"
            )

    def _apply_task(self, task: Task) -> None:
        data = {
            "rand_vec": np.array([task.scalar(name) for name in self.family.param_names]),
            "env_cls": self.metaworld_class,
            "partially_observable": self._inner._partially_observable,
        }
        self._inner.set_task(MetaWorldTask(self.family.env_name, pickle.dumps(data)))

    def reset_model(self) -> np.ndarray:
        """Meta-World's reset, from a hand start jittered with the env's seeded generator."""
        noise = self.np_random.uniform(-self._hand_noise, self._hand_noise, size=3)
        self._inner.hand_init_pos = self._hand_start + noise
        obs, _ = self._inner.reset()
        return obs

    def _robot_step(self, action: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self._inner.step(action)
        info = {**info, "success": bool(info["success"]), "reward_metaworld": float(reward)}
        return obs, float(reward), terminated, truncated, info


class MetaWorldReachEnv(_MetaWorldML1):
    """Meta-World's ``reach-v3`` under ML1 tasks."""

    family = _FAMILIES["MetaWorldReach"]
    metaworld_class = SawyerReachEnvV3


class MetaWorldPushEnv(_MetaWorldML1):
    """Meta-World's ``push-v3`` under ML1 tasks."""

    family = _FAMILIES["MetaWorldPush"]
    metaworld_class = SawyerPushEnvV3


class MetaWorldPickPlaceEnv(_MetaWorldML1):
    """Meta-World's ``pick-place-v3`` under ML1 tasks."""

    family = _FAMILIES["MetaWorldPickPlace"]
    metaworld_class = SawyerPickPlaceEnvV3
