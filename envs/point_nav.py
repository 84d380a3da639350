"""``PointNav2D``: a point mass that must find a goal in the plane (Finn et al. 2017, Sec. 5.3).

Goals lie in ``[-0.5, 0.5]^2`` and the reward is the negative distance to the goal, as in the MAML
paper; the agent does not observe the goal and must infer it from rewards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from envs.base import MetaEnv, StepResult
from envs.scene import SceneSpec, View
from metarobot.tasks import ParamSpec, SplitRule, Task, TaskFamily

ASSETS = Path(__file__).parent / "assets"

POINT_NAV_2D = TaskFamily(
    name="PointNav2D",
    specs=(ParamSpec("goal", -0.5, 0.5, size=2, doc="goal position (x, y)"),),
    split_rule=SplitRule(cells=10, period=5),
    horizon=100,
    doc="point mass navigates to an unobserved goal; reward = -distance",
    hidden_sizes=(64, 64),
)


class PointMass(MujocoEnv):
    """The robot: a point on a plane whose actions are target velocities in ``[-1, 1]^2``.

    Observation: position and velocity ``(x, y, vx, vy)``.
    """

    metadata = {  # noqa: RUF012 (Gymnasium declares it as an instance attribute)
        "render_modes": ["human", "rgb_array", "depth_array"],
        "render_fps": 10,
    }

    def __init__(self, frame_skip: int = 5, reset_noise_scale: float = 0.01, **kwargs: Any):
        self._reset_noise_scale = reset_noise_scale
        MujocoEnv.__init__(
            self,
            str(ASSETS / "point_nav.xml"),
            frame_skip,
            observation_space=Box(-np.inf, np.inf, shape=(4,), dtype=np.float64),
            camera_name=kwargs.pop("camera_name", "top"),
            **kwargs,
        )

    def _get_obs(self) -> np.ndarray:
        return np.concatenate((self.data.qpos, self.data.qvel))

    def _get_rew(self, position: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> StepResult:  # type: ignore[override]
        """Apply a velocity command for one control step."""
        self._step_mujoco_simulation(action, self.frame_skip)
        position = self.data.qpos.copy()
        reward, info = self._get_rew(position, action)
        info["position"] = position
        return self._get_obs(), reward, False, False, info

    def reset_model(self) -> np.ndarray:
        """Start near the origin, as in the MAML paper."""
        noise = self._reset_noise_scale
        qpos = self.init_qpos + self.np_random.uniform(-noise, noise, size=self.model.nq)
        self.set_state(qpos, self.init_qvel.copy())
        return self._get_obs()


class PointNav2DEnv(MetaEnv, PointMass):
    """Point-mass navigation to a goal; ``success`` within ``success_radius`` of it.

    Args:
        success_radius: Distance to the goal counted as success.
        **kwargs: :class:`~envs.base.MetaEnv`'s (``task``, ``horizon``, ``task_split``,
            ``resample_tasks``) and :class:`PointMass`'s (``render_mode``, ``width``, ...).
    """

    scene = SceneSpec(View(camera="top", shadows=False), trail_radius=0.008)

    family = POINT_NAV_2D
    info_keys = ("reward_distance", "distance", "success")  # and the position, an array

    def __init__(self, *, success_radius: float = 0.1, **kwargs: Any):
        self._success_radius = success_radius
        super().__init__(**kwargs)

    def _init_family(self) -> None:
        self._goal = np.zeros(2)
        self._goal_site = self.model.site("goal").id

    def _apply_task(self, task: Task) -> None:
        self._goal = task.vector("goal")
        self.model.site_pos[self._goal_site, :2] = self._goal

    def _get_rew(self, position: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        distance = float(np.linalg.norm(position - self._goal))
        return -distance, {
            "reward_distance": -distance,
            "distance": distance,
            "success": distance < self._success_radius,
        }
