"""Scripted controllers that solve the manipulation families from the state and the task's goal.

A controller maps the observation (hand, finger opening, object) to an action, knowing the goal,
which it reads from the task (the agent does not see it). What to do next follows from where the
hand and object are, as in Meta-World's scripted policies, so a controller recovers by itself
when a grasp misses or an object slips. They serve as demonstrations and as test oracles: solving
>= 90% of every family's benchmark test tasks shows that the tasks are solvable within the
horizon and that grasps hold.

- ``Reach``: :class:`ReachController` flies the open hand to the goal.
- ``PickPlace``, ``PickPlaceParams``: :class:`PickPlaceController` grasps from above and carries.
- ``Push``: the same controller with the goal on the table: like Meta-World's push oracle, it
  closes the fingers around the puck and slides it there.

Example::

    env = envs.make("PickPlace", task=task)
    controller = controller_for(task)
    obs, _ = env.reset(seed=0)
    for _ in range(env.horizon):
        obs, reward, terminated, truncated, info = env.step(controller(obs))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.manipulation.families import vector
from metarobot.tasks import Task

Controller = Callable[[np.ndarray], np.ndarray]

OPEN, CLOSE = -1.0, 1.0
GAIN = 15.0  # action per metre of hand error: full speed (1 cm per step) from 6.7 cm away
SAFE_HEIGHT = 0.08  # above the table (m): the fingertips clear any object
SLIDE_HEIGHT = 0.02  # the lowest hand height, at which a held object slides on the table
ALIGNED = 0.012  # hand-object horizontal error (m) under which the hand may descend


def move(hand: np.ndarray, target: np.ndarray, grip: float) -> np.ndarray:
    """The action moving the hand toward ``target`` (proportional, saturated) with ``grip``."""
    return np.array([*np.clip(GAIN * (target - hand), -1.0, 1.0), grip])


@dataclass(frozen=True)
class ReachController:
    """Fly the open hand straight to the goal."""

    goal: np.ndarray

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Action for ``obs``."""
        return move(obs[0:3], self.goal, OPEN)


class PickPlaceController:
    """Grasp the object from above, then carry it to the goal.

    Above the object with open fingers, descend to its centre, close, and once the fingers have
    settled on it (the opening stopped shrinking while the object sits between them) move to the
    goal. If the object leaves the hand, the same rules lead back to it. The one piece of memory
    is the previous opening, which tells whether the fingers are still closing.

    Args:
        goal: Where the object must go.
        hold: Hand-object distance (m) under which the object is between the fingers.
    """

    def __init__(self, goal: np.ndarray, hold: float = 0.02):
        self.goal = goal
        self.hold = hold
        self._previous_opening = 1.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Action for ``obs``."""
        hand, opening, obj = obs[0:3], float(obs[3]), obs[4:7]
        # Closed some way and no longer closing (the opening shrinks ~0.1 per step in motion).
        settled = opening < 0.9 and self._previous_opening - opening < 0.002
        self._previous_opening = opening
        if math.dist(hand, obj) < self.hold and settled:
            return move(hand, self.goal, CLOSE)
        if math.dist(hand[:2], obj[:2]) > ALIGNED:  # go above it, never lower than on the way
            height = max(obj[2] + SAFE_HEIGHT - 0.02, hand[2])
            return move(hand, np.array([*obj[:2], height]), OPEN)
        if hand[2] - obj[2] > 0.008:  # descend to its centre (or as low as the workspace goes)
            return move(hand, obj, OPEN)
        return move(hand, obj, CLOSE)


def controller_for(task: Task) -> Controller:
    """The scripted controller of ``task``'s family, given the task's goal."""
    if task.family == "Reach":
        return ReachController(vector(task, "goal", 3))
    if task.family == "Push":
        return PickPlaceController(np.array([*vector(task, "goal", 2), SLIDE_HEIGHT]))
    if task.family in ("PickPlace", "PickPlaceParams"):
        return PickPlaceController(vector(task, "goal", 3))
    raise ValueError(
        f"no scripted controller for family {task.family!r}; "
        "valid: Reach, Push, PickPlace, PickPlaceParams"
    )


__all__ = [
    "Controller",
    "PickPlaceController",
    "ReachController",
    "controller_for",
]
