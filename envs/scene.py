"""How a family is filmed: the vocabulary of its scene (camera, markers, caption).

A meta-RL video is only readable when the task is visible: where the goal is, which way or how
fast the robot should run. Each family's env class declares its :class:`SceneSpec` as
``scene`` beside its task space (``metarobot.rendering`` films it); a family without one gets a
generic scene there. Goals that the model already holds (the ``goal`` sites of PointNav2D and
the tabletop families) are drawn by MuJoCo itself; the others are drawn as decorative geoms
added to the renderer's ``mjvScene`` after MuJoCo fills it (Gymnasium's ``add_marker``, i.e.
``mjv_initGeom``), so physics never sees them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from metarobot.tasks import Task

Marker = dict[str, Any]
"""Keyword arguments of Gymnasium's ``OffScreenViewer.add_marker``, passed to ``mjv_initGeom``,
whose ``size`` follows the model's geom convention (a capsule or cylinder takes
``(radius, half-length, unused)``), not the XYZ scaling of ``mjvGeom.size``."""

GOAL_RGBA = (0.9, 0.2, 0.2, 0.6)
"""Goal colour, the same red as PointNav2D's goal site, so goals look alike in every family."""
TARGET_RGBA = (0.1, 0.75, 0.2, 0.9)
"""Colour of arrows showing a commanded direction or velocity."""
TRAIL_RGBA = (0.2, 0.4, 0.9, 0.5)
"""Colour of the path the robot has taken (PointNav2D's point is this blue)."""
MAX_TRAIL = 250
"""Trail points drawn (evenly thinned beyond), well under Gymnasium's 1000 scene geoms."""


@dataclass(frozen=True)
class View:
    """A camera: a fixed model camera, or a free camera following the robot or fixed on a point.

    Attributes:
        camera: Name of a fixed camera of the model (e.g. ``"top"``); ``None`` for a free camera
            whose look-at point follows the robot's torso in the ground plane.
        lookat: A fixed look-at point (world, m) for the free camera instead: an arm does not
            move away, and what it works on lies away from its base.
        distance: Free camera distance to its look-at point (m).
        elevation: Free camera elevation (degrees, negative looks down).
        azimuth: Free camera azimuth (degrees; 90 looks along +y, so +x runs to the right).
        lookat_height: Height of the look-at point (m); fixed, so hops do not shake the view.
        frame_goal: Look at the midpoint of torso and goal, keeping both in view.
        shadows: Draw shadows; they show height and contact in oblique views, add nothing to a
            view from straight above, and cost most of a software-rendered frame (MuJoCo's
            default 4096-pixel shadow map).
    """

    camera: str | None = None
    lookat: tuple[float, float, float] | None = None
    distance: float = 4.0
    elevation: float = -20.0
    azimuth: float = 90.0
    lookat_height: float = 0.4
    frame_goal: bool = False
    shadows: bool = True


MarkerFn = Callable[[Task, np.ndarray], list[Marker]]
CaptionFn = Callable[[Task, Mapping[str, Any]], str]


def no_markers(task: Task, torso: np.ndarray) -> list[Marker]:
    """No decorations (the default)."""
    return []


def task_vectors(task: Task) -> dict[str, tuple[float, ...] | float]:
    """The task's parameters with per-axis scalars (``goal_x``, ``goal_y``) joined as vectors."""
    grouped: dict[str, list[float]] = {}
    values: dict[str, tuple[float, ...] | float] = {}
    for name, value in task.params:
        stem, _, axis = name.rpartition("_")
        if stem and axis in ("x", "y", "z") and isinstance(value, float):
            grouped.setdefault(stem, []).append(value)  # params are sorted: x, y, z in order
        else:
            values[name] = value
    return {**{stem: tuple(v) for stem, v in grouped.items()}, **values}


def params_caption(task: Task, info: Mapping[str, Any]) -> str:
    """The default caption: the distance to the goal if the env reports it, then the task."""
    parts = [f"distance {info['distance']:.2f}"] if "distance" in info else []
    for name, value in task_vectors(task).items():
        if isinstance(value, tuple) and len(value) > 3:
            parts.append(f"{name} [{len(value)} values]")
        elif isinstance(value, tuple):
            parts.append(f"{name} ({', '.join(f'{v:+.2f}' for v in value)})")
        else:
            parts.append(f"{name} {value:.3g}")
    return ", ".join(parts)


@dataclass(frozen=True)
class SceneSpec:
    """How to film one family.

    Attributes:
        view: The camera.
        markers: Decorative geoms for the task, given the torso position (world frame).
        caption: A short line saying what the task asks and how the robot is doing.
        trail_radius: Radius of the line marking the path on the ground (0: no trail); for
            goal-reaching, the path shows whether the robot searched or went straight.
    """

    view: View = field(default_factory=View)
    markers: MarkerFn = no_markers
    caption: CaptionFn = params_caption
    trail_radius: float = 0.0


def goal_of(task: Task) -> np.ndarray | None:
    """The task's goal (``goal`` or ``goal_x``, ``goal_y``[, ``goal_z``]) padded to 3-D, if any."""
    goal = task_vectors(task).get("goal")
    if not isinstance(goal, tuple) or len(goal) not in (2, 3):
        return None
    return np.pad(np.asarray(goal, dtype=np.float64), (0, 3 - len(goal)))


def goal_markers(goal: np.ndarray, radius: float = 0.3, height: float = 0.6) -> list[Marker]:
    """A flat disk on the ground with a pole and ball, visible from low and high cameras."""
    x, y, z = goal
    return [
        {
            "type": mujoco.mjtGeom.mjGEOM_CYLINDER,
            "pos": np.array([x, y, z + 0.005]),
            "size": np.array([radius, 0.005, 0.0]),
            "rgba": np.array(GOAL_RGBA),
        },
        {
            "type": mujoco.mjtGeom.mjGEOM_CYLINDER,
            "pos": np.array([x, y, z + height / 2]),
            "size": np.array([0.03, height / 2, 0.0]),
            "rgba": np.array(GOAL_RGBA),
        },
        {
            "type": mujoco.mjtGeom.mjGEOM_SPHERE,
            "pos": np.array([x, y, z + height]),
            "size": np.full(3, 0.1),
            "rgba": np.array([*GOAL_RGBA[:3], 1.0]),
        },
    ]


def _horizontal_frame(direction: np.ndarray) -> np.ndarray:
    """Flattened rotation whose local z axis is the horizontal ``direction``."""
    forward = np.array([direction[0], direction[1], 0.0])
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0])
    # (up, forward x up, forward) is right-handed; arrows and capsules extend along local z.
    return np.column_stack([up, np.cross(forward, up), forward]).ravel()


def arrow_marker(origin: np.ndarray, direction: np.ndarray, length: float) -> Marker:
    """An arrow of ``length`` metres from ``origin`` along the horizontal ``direction``."""
    return {
        "type": mujoco.mjtGeom.mjGEOM_ARROW,
        "pos": np.asarray(origin, dtype=np.float64),
        "size": np.array([0.04, 0.04, max(length, 0.05)]),
        "mat": _horizontal_frame(direction),
        "rgba": np.array(TARGET_RGBA),
    }


def along_x_arrow(height: float, length: Callable[[Task], float]) -> MarkerFn:
    """Markers of one arrow along x, ``height`` above the torso, ``length(task)`` metres long.

    A negative length points the arrow backward: forward/backward and target-velocity families
    of every robot draw their command this way.
    """

    def markers(task: Task, torso: np.ndarray) -> list[Marker]:
        origin = np.array([torso[0], torso[1], torso[2] + height])
        value = length(task)
        return [arrow_marker(origin, np.array([math.copysign(1.0, value), 0.0]), abs(value))]

    return markers


def target_velocity_caption(task: Task, info: Mapping[str, Any]) -> str:
    """``target 1.50 m/s, now +1.20``: the task's ``velocity`` and the step's ``x_velocity``."""
    caption = f"target {task.scalar('velocity'):.2f} m/s"
    if "x_velocity" in info:
        caption += f", now {info['x_velocity']:+.2f}"
    return caption


def forward_backward_caption(task: Task, info: Mapping[str, Any]) -> str:
    """``run forward, v +1.20 m/s``: the sign of the task's ``direction``, the step's speed."""
    caption = "run forward" if task.scalar("direction") > 0 else "run backward"
    if "x_velocity" in info:
        caption += f", v {info['x_velocity']:+.2f} m/s"
    return caption


def trail_markers(points: np.ndarray, radius: float) -> list[Marker]:
    """Capsules joining consecutive points of a path at constant height (a polyline)."""
    markers = []
    for start, end in itertools.pairwise(points):
        half = float(np.linalg.norm(end - start)) / 2
        if half < radius / 4:  # the robot barely moved: a capsule would add nothing visible
            continue
        markers.append(
            {
                "type": mujoco.mjtGeom.mjGEOM_CAPSULE,
                "pos": (start + end) / 2,
                "size": np.array([radius, half, 0.0]),
                "mat": _horizontal_frame(end - start),
                "rgba": np.array(TRAIL_RGBA),
            }
        )
    return markers


def task_goal_markers(task: Task, torso: np.ndarray) -> list[Marker]:
    """A goal marker at the task's ``goal`` parameter, if it has one."""
    goal = goal_of(task)
    return [] if goal is None else goal_markers(goal)
