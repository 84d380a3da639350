"""Filming a family: its env's scene (:mod:`envs.scene`), or a generic one, on a render env.

Families declare their camera, markers and caption beside their env (``MetaEnv.scene``).
Families without one (the tabletop ones, and any new one) get a generic scene: the model's fixed
``top`` camera when it has one, else a camera following the robot; a marker at a ``goal``
parameter unless the model has a goal site; the task parameters as the caption.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np

import envs
from envs.base import MetaEnv
from envs.scene import (
    MAX_TRAIL,
    Marker,
    SceneSpec,
    View,
    goal_of,
    no_markers,
    task_goal_markers,
    trail_markers,
)
from metarobot.rendering.headless import setup_headless_gl
from metarobot.tasks import Task

_ROBOT_BODY = 1  # the first body under the world: the torso (or the point) of a mobile robot


def scene_for(family: str, model: mujoco.MjModel) -> SceneSpec:
    """The family's scene (its env class's ``scene``), or a generic one if it declares none.

    The generic scene films from the model's ``top`` camera when it has one (tabletop scenes),
    else follows the robot; it marks a ``goal`` parameter unless the model shows the goal
    itself with a ``goal`` site.
    """
    declared = envs.env_class(family).scene
    if declared is not None:
        return declared
    if _has(model, mujoco.mjtObj.mjOBJ_CAMERA, "top"):
        view = View(camera="top", shadows=False)
    else:
        view = View(distance=model.stat.extent)
    has_goal_site = _has(model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    return SceneSpec(view, no_markers if has_goal_site else task_goal_markers)


def _has(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> bool:
    return int(mujoco.mj_name2id(model, kind, name)) >= 0


class Stage:
    """A render env of one family on one task, filmed with the family's camera and markers.

    Args:
        family: Family name (``ValueError`` listing the valid ones otherwise).
        task: The task to show.
        width: Frame width in pixels.
        height: Frame height in pixels.
        horizon: Episode length (the family's default when ``None``).
        env_options: Further keywords of the family's env (a run's ``env_options``).

    Raises:
        HeadlessGLError: No offscreen OpenGL backend works (the message says what to install).
    """

    def __init__(
        self,
        family: str,
        task: Task,
        width: int,
        height: int,
        horizon: int | None = None,
        env_options: Mapping[str, Any] | None = None,
    ) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"frame size must be at least 16x16 pixels, got {width}x{height}")
        setup_headless_gl()
        self.env: MetaEnv = envs.make(
            family,
            task=task,
            horizon=horizon,
            render_mode="rgb_array",
            width=width,
            height=height,
            **(env_options or {}),
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
        if view.lookat is not None:
            camera.lookat[:] = view.lookat
        else:
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
