"""Reach, Push, PickPlace and PickPlaceParams: the tabletop gripper under varied tasks.

Rewards are dense and shaped like Meta-World's (reach the object, grasp it, lift it, place it),
but as a plain sum of terms, each reported in ``info`` as ``reward_<term>``:

- ``reach``: ``w.reach * closeness(|hand - target|)``, the target being the goal (Reach) or the
  object (Push, PickPlace);
- ``grasp``: ``w.grasp`` while both fingertips press on the object (PickPlace);
- ``lift``: ``w.lift`` while grasped and more than 1 cm above its rest height (PickPlace);
- ``place``: ``w.place * closeness(|object - goal|)``, in the plane for Push, and only while the
  object is grasped and lifted for PickPlace (so sliding it along the table earns nothing);
- ``success``: ``w.success`` when the hand (Reach) or object is within 5 cm of the goal.

with ``closeness(d) = 1 - tanh(5 d)`` (1 at the target, 0.54 at 10 cm) and the weights
:class:`RewardWeights`. Episodes never terminate (Meta-World's convention); they last the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from envs.base import MetaEnv, StepResult
from envs.manipulation.families import (
    PICK_PLACE,
    PICK_PLACE_PARAMS,
    PUSH,
    REACH,
    REACH_OBJECT_XY,
    BenchmarkFamily,
    vector,
)
from envs.manipulation.object_physics import ObjectPhysics
from envs.manipulation.robot import ObjectShape, TabletopGripper
from metarobot.tasks import Task

LIFT_HEIGHT = 0.01  # above its rest height, the object counts as lifted (m)


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (see the module docstring); a family uses those it defines."""

    reach: float = 1.0
    grasp: float = 1.0
    lift: float = 1.0
    place: float = 5.0
    success: float = 2.0


def closeness(distance: float) -> float:
    """A shaped reward in ``(0, 1]``: 1 at the target, still sloped 40 cm away."""
    return 1.0 - math.tanh(5.0 * distance)


class _TabletopTask(MetaEnv, TabletopGripper):
    """A tabletop family: the task places the goal (and object); subclasses score a step.

    Args:
        object_shape: ``"cube"`` or ``"cylinder"`` (default: the family's own).
        reward_weights: Weights of the reward terms.
        success_radius: Distance to the goal (m) counted as success.
        **kwargs: :class:`~envs.base.MetaEnv`'s (``task``, ``horizon`` (default 150),
            ``task_split``, ``resample_tasks``) and :class:`TabletopGripper`'s (``observe_goal``:
            append the goal to the observation, hidden by default as in ML1; ``hand_noise``,
            ``frame_skip``, ``render_mode``, ``width``, ...).
    """

    family: ClassVar[BenchmarkFamily]
    default_shape: ClassVar[ObjectShape] = "cube"
    can_share_model = True
    info_keys: ClassVar[tuple[str, ...]] = ("reward_success", "distance", "success")
    """The keys every tabletop family reports; each adds those of its :meth:`_score`."""

    def __init__(
        self,
        *,
        object_shape: ObjectShape | None = None,
        reward_weights: RewardWeights | None = None,
        success_radius: float = 0.05,
        **kwargs: Any,
    ):
        self._weights = reward_weights or RewardWeights()
        self._success_radius = success_radius
        super().__init__(object_shape=object_shape or self.default_shape, **kwargs)

    def _robot_step(self, action: np.ndarray) -> StepResult:
        self._actuate(action)
        obs = self._get_obs()
        distance, info = self._score(obs[0:3], obs[4:7])
        success = distance < self._success_radius
        info["reward_success"] = self._weights.success if success else 0.0
        info["distance"] = distance
        info["success"] = success
        reward = sum(value for key, value in info.items() if key.startswith("reward_"))
        return obs, reward, False, False, info

    def _score(self, hand: np.ndarray, obj: np.ndarray) -> tuple[float, dict[str, Any]]:
        """The distance that decides success, and the family's reward terms and diagnostics."""
        raise NotImplementedError


class ReachEnv(_TabletopTask):
    """Move the hand to ``(goal_x, goal_y, goal_z)``; the object stays on the table, unused."""

    family = REACH
    info_keys = (*_TabletopTask.info_keys, "reward_reach")

    def _apply_task(self, task: Task) -> None:
        self.object_start = np.array(REACH_OBJECT_XY)
        self._set_goal(vector(task, "goal", 3))

    def _score(self, hand: np.ndarray, obj: np.ndarray) -> tuple[float, dict[str, Any]]:
        distance = math.dist(hand, self.goal)
        return distance, {"reward_reach": self._weights.reach * closeness(distance)}


class PushEnv(_TabletopTask):
    """Push the puck from ``(object_x, object_y)`` to ``(goal_x, goal_y)`` on the table."""

    family = PUSH
    info_keys = (*_TabletopTask.info_keys, "reward_reach", "reward_place")
    default_shape = "cylinder"

    def _apply_task(self, task: Task) -> None:
        self.object_start = vector(task, "object", 2)
        self._set_goal(np.array([*vector(task, "goal", 2), self.object_rest_height]))

    def _score(self, hand: np.ndarray, obj: np.ndarray) -> tuple[float, dict[str, Any]]:
        distance = math.dist(obj[:2], self.goal[:2])
        return distance, {
            "reward_reach": self._weights.reach * closeness(math.dist(hand, obj)),
            "reward_place": self._weights.place * closeness(distance),
        }


class PickPlaceEnv(_TabletopTask):
    """Grasp the cube at ``(object_x, object_y)`` and hold it at ``(goal_x, goal_y, goal_z)``."""

    family = PICK_PLACE
    info_keys = (
        *_TabletopTask.info_keys,
        "reward_reach",
        "reward_grasp",
        "reward_lift",
        "reward_place",
        "grasped",
    )

    def _apply_task(self, task: Task) -> None:
        self.object_start = vector(task, "object", 2)
        self._set_goal(vector(task, "goal", 3))

    def _score(self, hand: np.ndarray, obj: np.ndarray) -> tuple[float, dict[str, Any]]:
        w = self._weights
        distance = math.dist(obj, self.goal)
        grasped = self.grasped()
        lifted = grasped and obj[2] > self.object_rest_height + LIFT_HEIGHT
        return distance, {
            "reward_reach": w.reach * closeness(math.dist(hand, obj)),
            "reward_grasp": w.grasp if grasped else 0.0,
            "reward_lift": w.lift if lifted else 0.0,
            "reward_place": w.place * closeness(distance) if lifted else 0.0,
            "grasped": grasped,
        }


class PickPlaceParamsEnv(PickPlaceEnv):
    """PickPlace with the object's ``mass``, ``size`` and ``friction`` multiplied in place."""

    family = PICK_PLACE_PARAMS
    can_share_model = False  # tasks scale the object's mass, size and friction in the model

    def _init_family(self) -> None:
        super()._init_family()
        self._physics = ObjectPhysics(self.model, "object")

    def _apply_task(self, task: Task) -> None:
        self._physics.apply({name: task.scalar(name) for name in ("mass", "size", "friction")})
        super()._apply_task(task)
