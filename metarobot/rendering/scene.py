"""How each family is filmed: camera, goal markers and a one-line caption of the task.

A meta-RL video is only readable when the task is visible: where the goal is, which way or how
fast the robot should run. Goals that the model already holds (the ``goal`` sites of PointNav2D
and the tabletop families) are drawn by MuJoCo itself; the others are drawn as decorative geoms
added to the renderer's ``mjvScene`` after MuJoCo fills it (Gymnasium's ``add_marker``, i.e.
``mjv_initGeom``), so physics never sees them. Families without an entry in :data:`SCENES`
(the tabletop ones, and any new one) get a generic scene: the model's fixed ``top`` camera when
it has one, else a camera following the robot; a marker at a ``goal`` parameter unless the model
has a goal site; the task parameters as the caption.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

import envs
from envs.base import MetaEnv
from metarobot.rendering.headless import setup_headless_gl
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

_ROBOT_BODY = 1  # the first body under the world: the torso (or the point) of a mobile robot


@dataclass(frozen=True)
class View:
    """A camera: a fixed model camera, or a free camera following the robot.

    Attributes:
        camera: Name of a fixed camera of the model (e.g. ``"top"``); ``None`` for a free camera
            whose look-at point follows the robot's torso in the ground plane.
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
    distance: float = 4.0
    elevation: float = -20.0
    azimuth: float = 90.0
    lookat_height: float = 0.4
    frame_goal: bool = False
    shadows: bool = True


MarkerFn = Callable[[Task, np.ndarray], list[Marker]]
CaptionFn = Callable[[Task, Mapping[str, Any]], str]


def _no_markers(task: Task, torso: np.ndarray) -> list[Marker]:
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


def _params_caption(task: Task, info: Mapping[str, Any]) -> str:
    """Distance to the goal when the env reports it, then the task's parameters."""
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
    markers: MarkerFn = _no_markers
    caption: CaptionFn = _params_caption
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


def _generic_goal_markers(task: Task, torso: np.ndarray) -> list[Marker]:
    goal = goal_of(task)
    return [] if goal is None else goal_markers(goal)


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


def _velocity_arrow(task: Task, torso: np.ndarray) -> list[Marker]:
    # Arrow length is the distance covered in half a second at the target velocity.
    origin = np.array([torso[0], torso[1], torso[2] + 0.6])
    return [arrow_marker(origin, np.array([1.0, 0.0]), 0.5 * task.scalar("velocity"))]


def _velocity_caption(task: Task, info: Mapping[str, Any]) -> str:
    caption = f"target {task.scalar('velocity'):.2f} m/s"
    if "x_velocity" in info:
        caption += f", now {info['x_velocity']:+.2f}"
    return caption


def _direction_arrow(task: Task, torso: np.ndarray) -> list[Marker]:
    origin = np.array([torso[0], torso[1], torso[2] + 0.6])
    return [arrow_marker(origin, np.array([task.scalar("direction"), 0.0]), 1.0)]


def _direction_caption(task: Task, info: Mapping[str, Any]) -> str:
    caption = "run forward" if task.scalar("direction") > 0 else "run backward"
    if "x_velocity" in info:
        caption += f", v {info['x_velocity']:+.2f} m/s"
    return caption


def _dynamics_caption(task: Task, info: Mapping[str, Any]) -> str:
    which = f"task {task.index}" if task.index >= 0 else "custom task"
    caption = f"varied dynamics ({task.split} {which})"
    if "x_velocity" in info:
        caption += f", v {info['x_velocity']:+.2f} m/s"
    return caption


_SIDE_VIEW = View(distance=3.5, elevation=-15.0, lookat_height=0.3)
_WALKER_VIEW = View(distance=3.2, elevation=-10.0, lookat_height=0.8)

SCENES: dict[str, SceneSpec] = {
    "PointNav2D": SceneSpec(View(camera="top", shadows=False), trail_radius=0.008),
    "AntGoal": SceneSpec(
        View(distance=9.0, elevation=-50.0, lookat_height=0.0, frame_goal=True),
        _generic_goal_markers,
        trail_radius=0.03,
    ),
    "AntDir": SceneSpec(
        View(distance=6.0, elevation=-45.0, lookat_height=0.0),
        _ant_dir_markers,
        _ant_dir_caption,
        trail_radius=0.03,
    ),
    "HalfCheetahVel": SceneSpec(_SIDE_VIEW, _velocity_arrow, _velocity_caption),
    "HalfCheetahDir": SceneSpec(_SIDE_VIEW, _direction_arrow, _direction_caption),
    "HopperParams": SceneSpec(_WALKER_VIEW, caption=_dynamics_caption),
    "Walker2dParams": SceneSpec(_WALKER_VIEW, caption=_dynamics_caption),
}
"""Per-family scenes; :func:`scene_for` builds one for any other family."""


def _has(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> bool:
    return int(mujoco.mj_name2id(model, kind, name)) >= 0


def scene_for(family: str, model: mujoco.MjModel) -> SceneSpec:
    """The family's scene, or a generic one for a family without an entry in :data:`SCENES`.

    The generic scene films from the model's ``top`` camera when it has one (tabletop scenes),
    else follows the robot; it marks a ``goal`` parameter unless the model shows the goal
    itself with a ``goal`` site.
    """
    if family in SCENES:
        return SCENES[family]
    if _has(model, mujoco.mjtObj.mjOBJ_CAMERA, "top"):
        view = View(camera="top", shadows=False)
    else:
        view = View(distance=model.stat.extent)
    has_goal_site = _has(model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    return SceneSpec(view, _no_markers if has_goal_site else _generic_goal_markers)


class Stage:
    """A render env of one family on one task, filmed with the family's camera and markers.

    Args:
        family: Family name (``ValueError`` listing the valid ones otherwise).
        task: The task to show.
        width: Frame width in pixels.
        height: Frame height in pixels.
        horizon: Episode length (the family's default when ``None``).

    Raises:
        HeadlessGLError: No offscreen OpenGL backend works (the message says what to install).
    """

    def __init__(
        self, family: str, task: Task, width: int, height: int, horizon: int | None = None
    ) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"frame size must be at least 16x16 pixels, got {width}x{height}")
        setup_headless_gl()
        self.env: MetaEnv = envs.make(
            family, task=task, horizon=horizon, render_mode="rgb_array", width=width, height=height
        )
        self.task = task
        self.scene = scene_for(family, self.env.model)
        self._trail: list[np.ndarray] = []
        camera = self.scene.view.camera
        if camera is not None:
            if not _has(self.env.model, mujoco.mjtObj.mjOBJ_CAMERA, camera):
                raise ValueError(f"{family}'s model has no camera named {camera!r}")
            self.env.mujoco_renderer.camera_id = int(
                mujoco.mj_name2id(self.env.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            )

    def reset(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (and a new trail) from ``seed``."""
        self._trail.clear()
        return self.env.reset(seed=seed)

    def torso(self) -> np.ndarray:
        """World position of the robot's main body."""
        return np.asarray(self.env.data.xpos[_ROBOT_BODY], dtype=np.float64).copy()

    def _aim(self, camera: mujoco.MjvCamera, torso: np.ndarray) -> None:
        view = self.scene.view
        target = torso[:2]
        goal = goal_of(self.task)
        if view.frame_goal and goal is not None:
            target = (target + goal[:2]) / 2
        camera.lookat[:] = (target[0], target[1], view.lookat_height)
        camera.distance = view.distance
        camera.elevation = view.elevation
        camera.azimuth = view.azimuth

    def _trail_markers(self) -> list[Marker]:
        # Thinned evenly (keeping the latest point) so long episodes stay within the scene.
        stride = max(1, -(-len(self._trail) // MAX_TRAIL))
        points = self._trail[::-1][::stride][::-1]
        return trail_markers(np.array(points), self.scene.trail_radius) if points else []

    def render(self) -> np.ndarray:
        """The current state as an ``[height, width, 3]`` uint8 image, decorated.

        Call once per step: each call also extends the trail.
        """
        # Gymnasium creates its offscreen viewer (and GL context) lazily and keeps it private;
        # its camera and marker list are only reachable through it. Another env's context may
        # have become current since the last frame (Gymnasium switches only between the
        # viewers of one env), and MuJoCo would then draw into that one.
        viewer = self.env.mujoco_renderer._get_viewer(render_mode="rgb_array")
        viewer.make_context_current()
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.scene.view.shadows
        torso = self.torso()
        if self.scene.trail_radius > 0:
            self._trail.append(np.array([torso[0], torso[1], self.scene.trail_radius]))
        if self.scene.view.camera is None:
            self._aim(viewer.cam, torso)
        for marker in [*self.scene.markers(self.task, torso), *self._trail_markers()]:
            viewer.add_marker(**marker)
        frame = self.env.render()
        assert isinstance(frame, np.ndarray)
        return frame

    def caption(self, info: Mapping[str, Any]) -> str:
        """The task caption for the latest step's ``info``."""
        return self.scene.caption(self.task, info)

    def close(self) -> None:
        """Free the GL resources and the env.

        Gymnasium's ``close`` destroys the GL context but leaves MuJoCo's ``MjrContext`` to the
        garbage collector, which frees its framebuffers and textures by id in whichever context
        is current by then: another env's, whose frames turn black. Freeing it here, in its own
        context, keeps later renders in this process intact.
        """
        viewer = self.env.mujoco_renderer.viewer
        if viewer is not None:
            viewer.make_context_current()
            viewer.con.free()
        self.env.close()
