"""HalfCheetah families of the MAML paper: run at a target velocity, or forward/backward.

Both reuse Gymnasium's ``HalfCheetah-v5`` (model, observation, ``step``) and replace only the
forward term of its reward; the control cost weight is the MAML paper's 0.05.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from envs.base import MetaEnv, StepResult
from envs.scene import (
    SceneSpec,
    View,
    along_x_arrow,
    forward_backward_caption,
    target_velocity_caption,
)
from metarobot.tasks import FixedTasks, ParamSpec, SplitRule, Task, TaskFamily

HALF_CHEETAH_VEL = TaskFamily(
    name="HalfCheetahVel",
    specs=(ParamSpec("velocity", 0.0, 2.0, doc="target forward velocity (m/s)"),),
    split_rule=SplitRule(cells=20, period=5),
    horizon=200,
    doc="run at a target velocity; reward = -|v - v_target| - 0.05 |a|^2",
)

HALF_CHEETAH_DIR = TaskFamily(
    name="HalfCheetahDir",
    specs=(ParamSpec("direction", -1.0, 1.0, doc="+1 forward, -1 backward"),),
    split_rule=FixedTasks(({"direction": 1.0}, {"direction": -1.0})),
    horizon=200,
    doc="run forward or backward; reward = direction * v - 0.05 |a|^2",
)


_SIDE_VIEW = View(distance=3.5, elevation=-15.0, lookat_height=0.3)


class _HalfCheetahTask(MetaEnv, HalfCheetahEnv):
    """A HalfCheetah whose forward reward depends on the task.

    Args:
        ctrl_cost_weight: Weight of the control cost (the MAML paper's 0.05, Gymnasium's 0.1).
        **kwargs: :class:`~envs.base.MetaEnv`'s (``task``, ``horizon``, ``task_split``,
            ``resample_tasks``) and Gymnasium's ``HalfCheetahEnv``'s.
    """

    can_share_model = True
    info_keys = ("x_position", "x_velocity", "reward_forward", "reward_ctrl")

    def __init__(self, *, ctrl_cost_weight: float = 0.05, **kwargs: Any):
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)

    def _init_family(self) -> None:
        if not self._exclude_current_positions_from_observation:
            raise ValueError(f"{self.family.name} observations always exclude the x position")

    def _forward_reward(self, x_velocity: float) -> float:
        raise NotImplementedError

    def _robot_step(self, action: np.ndarray) -> StepResult:
        # Gymnasium's step spends a third of a HalfCheetah step in Python (shape checks, copies,
        # contact forces nobody reads); this one computes the same quantities leanly.
        x_after, x_velocity = self._step_along_x(action)
        forward = self._forward_reward(x_velocity)
        ctrl_cost = self._ctrl_cost_weight * float(action @ action)
        info = {
            "x_position": x_after,
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
        }
        observation = np.concatenate((self.data.qpos[1:], self.data.qvel))
        if self.render_mode == "human":
            self.render()
        return observation, forward - ctrl_cost, False, False, info


class HalfCheetahVelEnv(_HalfCheetahTask):
    """HalfCheetah that must run at ``task["velocity"]`` (Finn et al. 2017)."""

    # The arrow is the distance covered in half a second at the target velocity.
    scene = SceneSpec(
        _SIDE_VIEW,
        along_x_arrow(0.6, lambda task: 0.5 * task.scalar("velocity")),
        target_velocity_caption,
    )

    family = HALF_CHEETAH_VEL
    _target_velocity = 0.0

    def _apply_task(self, task: Task) -> None:
        self._target_velocity = task.scalar("velocity")

    def _forward_reward(self, x_velocity: float) -> float:
        return -abs(x_velocity - self._target_velocity)


class HalfCheetahDirEnv(_HalfCheetahTask):
    """HalfCheetah that must run forward (+1) or backward (-1) (Finn et al. 2017)."""

    scene = SceneSpec(
        _SIDE_VIEW,
        along_x_arrow(0.6, lambda task: task.scalar("direction")),
        forward_backward_caption,
    )

    family = HALF_CHEETAH_DIR
    _direction = 1.0

    def _apply_task(self, task: Task) -> None:
        self._direction = task.scalar("direction")

    def _forward_reward(self, x_velocity: float) -> float:
        return self._direction * x_velocity
