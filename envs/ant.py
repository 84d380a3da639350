"""Ant families: run in a direction on the circle, or walk to a goal in a disk (PEARL suite).

Both reuse Gymnasium's ``Ant-v5`` (model, observation with contact forces, healthy and contact
terms, termination) and replace its forward reward with a task term.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from envs.base import MetaEnv
from metarobot.tasks import ParamSpec, SplitRule, Task, TaskFamily

GOAL_RADIUS = 3.0

ANT_DIR = TaskFamily(
    name="AntDir",
    specs=(ParamSpec("direction", 0.0, 2 * math.pi, doc="running direction (rad)"),),
    split_rule=SplitRule(cells=20, period=5),
    horizon=200,
    doc="run along a direction; reward = velocity . direction + healthy - ctrl - contact",
)


def _uniform_in_disk(rng: np.random.Generator) -> np.ndarray:
    """Unit-cube coordinates of a goal drawn uniformly in the disk of radius ``GOAL_RADIUS``."""
    angle = rng.uniform(0.0, 2 * math.pi)
    radius = GOAL_RADIUS * math.sqrt(rng.uniform())
    goal = radius * np.array([math.cos(angle), math.sin(angle)])
    return (goal + GOAL_RADIUS) / (2 * GOAL_RADIUS)


ANT_GOAL = TaskFamily(
    name="AntGoal",
    specs=(
        ParamSpec(
            "goal", -GOAL_RADIUS, GOAL_RADIUS, size=2, doc="goal (x, y), drawn uniformly in a disk"
        ),
    ),
    split_rule=SplitRule(cells=10, period=5),
    horizon=200,
    doc="walk to an unobserved goal; reward = -distance + healthy - ctrl - contact",
    sampler=_uniform_in_disk,
)


class _AntTask(MetaEnv, AntEnv):
    """An Ant whose forward reward is replaced by a task term computed from its planar motion.

    Keywords are :class:`~envs.base.MetaEnv`'s and Gymnasium's ``AntEnv``'s.
    """

    _needs_contact_forces = True
    can_share_model = True

    def _init_family(self) -> None:
        self._xy_before = np.zeros(2)

    def do_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        """Step, remembering where the torso was (Gymnasium passes only the x velocity on)."""
        self._xy_before = self.data.body(self._main_body).xpos[:2].copy()
        super().do_simulation(ctrl, n_frames)

    def _task_reward(self) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def _get_rew(self, x_velocity: float, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        task_reward, task_info = self._task_reward()
        healthy = self.healthy_reward
        ctrl_cost = self.control_cost(action)
        contact_cost = self.contact_cost
        reward = task_reward + healthy - ctrl_cost - contact_cost
        return reward, {
            **task_info,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
            "reward_survive": healthy,
        }


class AntDirEnv(_AntTask):
    """Ant rewarded for its velocity along ``task["direction"]`` (Rakelly et al. 2019)."""

    family = ANT_DIR
    _unit_direction = np.array([1.0, 0.0])

    def _apply_task(self, task: Task) -> None:
        angle = task.scalar("direction")
        self._unit_direction = np.array([math.cos(angle), math.sin(angle)])

    def _task_reward(self) -> tuple[float, dict[str, Any]]:
        xy_after = self.data.body(self._main_body).xpos[:2]
        velocity = (xy_after - self._xy_before) / self.dt
        forward = float(velocity @ self._unit_direction)
        return forward, {"reward_forward": forward}


class AntGoalEnv(_AntTask):
    """Ant rewarded for being close to ``task["goal"]`` (Rakelly et al. 2019).

    Args:
        success_radius: Distance of the torso to the goal counted as success (m).
        **kwargs: As for :class:`AntDirEnv`.
    """

    family = ANT_GOAL
    _goal = np.zeros(2)

    def __init__(self, *, success_radius: float = 0.5, **kwargs: Any):
        self._success_radius = success_radius
        super().__init__(**kwargs)

    def _apply_task(self, task: Task) -> None:
        self._goal = task.vector("goal")

    def _task_reward(self) -> tuple[float, dict[str, Any]]:
        distance = float(np.linalg.norm(self.data.body(self._main_body).xpos[:2] - self._goal))
        return -distance, {
            "reward_goal": -distance,
            "distance": distance,
            "success": distance < self._success_radius,
        }
