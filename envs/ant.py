"""Ant families: goal velocity, forward/backward (MAML), direction and goal in a disk (PEARL).

All reuse Gymnasium's ``Ant-v5`` (model, observation with contact forces, healthy and contact
terms, termination) and replace its forward reward with a task term. The MAML families also
take the MAML paper's weights: survive 0.05 and control cost 0.005 (Ant-v5: 1.0 and 0.5); the
contact cost weight and healthy range are Ant-v5's, which are the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from envs.base import MetaEnv, StepResult
from envs.scene import (
    Marker,
    SceneSpec,
    View,
    along_x_arrow,
    arrow_marker,
    forward_backward_caption,
    target_velocity_caption,
    task_goal_markers,
)
from metarobot.tasks import FixedTasks, ParamSpec, SplitRule, Task, TaskFamily

GOAL_RADIUS = 3.0

ANT_VEL = TaskFamily(
    name="AntVel",
    specs=(ParamSpec("velocity", 0.0, 3.0, doc="target forward velocity (m/s)"),),
    split_rule=SplitRule(cells=20, period=5),
    horizon=200,
    doc="run forward at a target velocity; reward = 1 - |v - v_target| + 0.05 - ctrl - contact",
)

ANT_FWD_BACK = TaskFamily(
    name="AntFwdBack",
    specs=(ParamSpec("direction", -1.0, 1.0, doc="+1 forward, -1 backward"),),
    split_rule=FixedTasks(({"direction": 1.0}, {"direction": -1.0})),
    horizon=200,
    doc="run forward or backward; reward = direction * v + 0.05 - ctrl - contact",
)

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


def _heading(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _ant_dir_markers(task: Task, torso: np.ndarray) -> list[Marker]:
    origin = np.array([torso[0], torso[1], torso[2] + 0.5])
    return [arrow_marker(origin, _heading(task.scalar("direction")), 1.2)]


def _ant_dir_caption(task: Task, info: Mapping[str, Any]) -> str:
    caption = f"run toward {math.degrees(task.scalar('direction')):.0f} deg"
    if "reward_forward" in info:
        caption += f", speed along it {info['reward_forward']:+.2f} m/s"
    return caption


class _AntTask(MetaEnv, AntEnv):
    """An Ant whose forward reward is replaced by a task term computed from its planar motion.

    Keywords are :class:`~envs.base.MetaEnv`'s and Gymnasium's ``AntEnv``'s.
    """

    _needs_contact_forces = True
    can_share_model = True
    info_keys: ClassVar[tuple[str, ...]] = (
        "x_position",
        "y_position",
        "distance_from_origin",
        "x_velocity",
        "y_velocity",
        "reward_ctrl",
        "reward_contact",
        "reward_survive",
    )
    """The keys every Ant family reports; each adds those of its task term."""

    def _init_family(self) -> None:
        self._torso = self.data.body(self._main_body).xpos  # a live view

    def _task_reward(
        self, x: float, y: float, vx: float, vy: float
    ) -> tuple[float, dict[str, Any]]:
        """The task term from the torso's position and velocity in the plane, and its info."""
        raise NotImplementedError

    def _robot_step(self, action: np.ndarray) -> StepResult:
        # Ant-v5's step with the task term for its forward reward, computed leanly: Ant-v5
        # checks health twice per step and copies the torso position through a name lookup;
        # plain floats are a few times faster than numpy scalars on single values.
        torso = self._torso
        x_before, y_before = float(torso[0]), float(torso[1])
        self._step_mujoco_simulation(action, self.frame_skip)
        x, y = float(torso[0]), float(torso[1])
        vx, vy = (x - x_before) / self._dt, (y - y_before) / self._dt
        task_reward, info = self._task_reward(x, y, vx, vy)
        healthy = bool(self.is_healthy)
        survive = self._healthy_reward if healthy else 0.0
        ctrl_cost = self._ctrl_cost_weight * float(action @ action)
        contact_cost = float(self.contact_cost)
        qpos = self.data.qpos
        info.update(
            x_position=float(qpos[0]),
            y_position=float(qpos[1]),
            distance_from_origin=math.hypot(qpos[0], qpos[1]),
            x_velocity=vx,
            y_velocity=vy,
            reward_ctrl=-ctrl_cost,
            reward_contact=-contact_cost,
            reward_survive=survive,
        )
        if self.render_mode == "human":
            self.render()
        terminated = not healthy and self._terminate_when_unhealthy
        reward = task_reward + survive - ctrl_cost - contact_cost
        return self._get_obs(), reward, terminated, False, info


class _MAMLAntTask(_AntTask):
    """An Ant with the MAML paper's survive reward and control cost (see the module docstring).

    Args:
        healthy_reward: Reward per step while healthy (the paper's 0.05, Ant-v5's 1.0).
        ctrl_cost_weight: Weight of the control cost (the paper's 0.005, Ant-v5's 0.5).
        **kwargs: As for :class:`AntDirEnv`.
    """

    _SIDE_VIEW = View(distance=5.0, elevation=-20.0, lookat_height=0.0)
    info_keys = (*_AntTask.info_keys, "reward_forward")

    def __init__(
        self, *, healthy_reward: float = 0.05, ctrl_cost_weight: float = 0.005, **kwargs: Any
    ):
        super().__init__(healthy_reward=healthy_reward, ctrl_cost_weight=ctrl_cost_weight, **kwargs)


class AntVelEnv(_MAMLAntTask):
    """Ant that must run forward at ``task["velocity"]`` (Finn et al. 2017, ant goal velocity)."""

    # The arrow is the distance covered in one second at the target velocity.
    scene = SceneSpec(
        _MAMLAntTask._SIDE_VIEW,
        along_x_arrow(0.5, lambda task: task.scalar("velocity")),
        target_velocity_caption,
        trail_radius=0.03,
    )

    family = ANT_VEL
    _target_velocity = 0.0

    def _apply_task(self, task: Task) -> None:
        self._target_velocity = task.scalar("velocity")

    def _task_reward(
        self, x: float, y: float, vx: float, vy: float
    ) -> tuple[float, dict[str, Any]]:
        forward = 1.0 - abs(vx - self._target_velocity)
        return forward, {"reward_forward": forward}


class AntFwdBackEnv(_MAMLAntTask):
    """Ant that must run forward (+1) or backward (-1) (Finn et al. 2017, ant forward/backward)."""

    scene = SceneSpec(
        _MAMLAntTask._SIDE_VIEW,
        along_x_arrow(0.5, lambda task: task.scalar("direction")),
        forward_backward_caption,
        trail_radius=0.03,
    )

    family = ANT_FWD_BACK
    _direction = 1.0

    def _apply_task(self, task: Task) -> None:
        self._direction = task.scalar("direction")

    def _task_reward(
        self, x: float, y: float, vx: float, vy: float
    ) -> tuple[float, dict[str, Any]]:
        forward = self._direction * vx
        return forward, {"reward_forward": forward}


class AntDirEnv(_AntTask):
    """Ant rewarded for its velocity along ``task["direction"]`` (Rakelly et al. 2019)."""

    scene = SceneSpec(
        View(distance=6.0, elevation=-45.0, lookat_height=0.0),
        _ant_dir_markers,
        _ant_dir_caption,
        trail_radius=0.03,
    )

    family = ANT_DIR
    info_keys = (*_AntTask.info_keys, "reward_forward")
    _cos, _sin = 1.0, 0.0

    def _apply_task(self, task: Task) -> None:
        angle = task.scalar("direction")
        self._cos, self._sin = math.cos(angle), math.sin(angle)

    def _task_reward(
        self, x: float, y: float, vx: float, vy: float
    ) -> tuple[float, dict[str, Any]]:
        forward = vx * self._cos + vy * self._sin
        return forward, {"reward_forward": forward}


class AntGoalEnv(_AntTask):
    """Ant rewarded for being close to ``task["goal"]`` (Rakelly et al. 2019).

    Args:
        success_radius: Distance of the torso to the goal counted as success (m).
        **kwargs: As for :class:`AntDirEnv`.
    """

    scene = SceneSpec(
        View(distance=9.0, elevation=-50.0, lookat_height=0.0, frame_goal=True),
        task_goal_markers,
        trail_radius=0.03,
    )

    family = ANT_GOAL
    info_keys = (*_AntTask.info_keys, "reward_goal", "distance", "success")
    _goal = (0.0, 0.0)

    def __init__(self, *, success_radius: float = 0.5, **kwargs: Any):
        self._success_radius = success_radius
        super().__init__(**kwargs)

    def _apply_task(self, task: Task) -> None:
        goal_x, goal_y = task.vector("goal").tolist()
        self._goal = (goal_x, goal_y)

    def _task_reward(
        self, x: float, y: float, vx: float, vy: float
    ) -> tuple[float, dict[str, Any]]:
        distance = math.hypot(x - self._goal[0], y - self._goal[1])
        return -distance, {
            "reward_goal": -distance,
            "distance": distance,
            "success": distance < self._success_radius,
        }
