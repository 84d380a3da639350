"""The robot of the manipulation families: a mocap-driven hand with a parallel gripper on a table.

Action (4 values in ``[-1, 1]``, clipped): displacement of the hand's mocap target by up to 1 cm
per control step along ``x, y, z`` (as in Meta-World; the target stays in the workspace box), and a
gripper command from ``-1`` (open, 9 cm between the pads) to ``+1`` (closed), a position target
for the finger servos, which squeeze with at most 16 N.

Observation (11 values, read from ``qpos`` so that they are exact after the step):

====== ==================================================================
0:3    hand (tool centre point between the fingertips) position (m)
3      finger opening, 1 open ... 0 closed
4:7    object position (m)
7:11   object orientation, quaternion ``(w, x, y, z)``
11:14  goal position (m), only with ``observe_goal=True``
====== ==================================================================

As in Meta-World's meta-learning benchmarks the goal is hidden by default: the agent must infer
it from rewards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from envs.manipulation.families import HAND_START, WORKSPACE_HIGH, WORKSPACE_LOW

ASSETS = Path(__file__).resolve().parents[1] / "assets"

ObjectShape = Literal["cube", "cylinder"]
OBJECT_SHAPES: tuple[ObjectShape, ...] = ("cube", "cylinder")
SIDES = ("left", "right")

STEP_SIZE = 0.01  # metres of mocap displacement per unit action and control step
FINGER_TRAVEL = 0.045  # each finger's slide range (m); the pads touch when both are at it
OBSERVATION_SIZE = 11
_LOW, _HIGH = tuple(WORKSPACE_LOW.tolist()), tuple(WORKSPACE_HIGH.tolist())
# A fingertip touch sensor reading above this (N) counts as contact: well above the force of a
# brush, well below the servos' 16 N squeeze.
TOUCH_THRESHOLD = 0.5


class TabletopGripper(MujocoEnv):
    """The robot and scene; task families subclass it and add goals, rewards and physics.

    Args:
        object_shape: ``"cube"`` (4 cm) or ``"cylinder"`` (a 5 cm wide puck).
        observe_goal: Append the goal to the observation (Meta-World's multi-task setting).
        frame_skip: Physics steps (2 ms each) per control step.
        hand_noise: Half-width (m) of the uniform noise on the hand's start position.
        **kwargs: Passed to Gymnasium's ``MujocoEnv`` (``render_mode``, ``width``, ...).
    """

    metadata = {  # noqa: RUF012 (Gymnasium declares it as an instance attribute)
        "render_modes": ["human", "rgb_array", "depth_array"],
        "render_fps": 100,
    }

    def __init__(
        self,
        object_shape: ObjectShape = "cube",
        observe_goal: bool = False,
        frame_skip: int = 5,
        hand_noise: float = 0.01,
        **kwargs: Any,
    ):
        if object_shape not in OBJECT_SHAPES:
            raise ValueError(f"object_shape must be one of {OBJECT_SHAPES}, got {object_shape!r}")
        if hand_noise < 0:
            raise ValueError(f"hand_noise must be >= 0 (m), got {hand_noise}")
        self._observe_goal = observe_goal
        self._hand_noise = hand_noise
        size = OBSERVATION_SIZE + (3 if observe_goal else 0)
        MujocoEnv.__init__(
            self,
            str(ASSETS / f"tabletop_{object_shape}.xml"),
            frame_skip,
            observation_space=Box(-np.inf, np.inf, shape=(size,), dtype=np.float64),
            camera_name=kwargs.pop("camera_name", "front"),
            **kwargs,
        )
        model = self.model
        self.action_space = Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self._hand_origin = model.body("hand").pos.copy()
        self._hand_target = self.data.mocap_pos[model.body("hand_target").mocapid[0]]
        self._goal_marker = self.data.mocap_pos[model.body("goal").mocapid[0]]
        self._hand_qpos = [int(model.joint(f"hand_{axis}").qposadr[0]) for axis in "xyz"]
        self._finger_qpos = [int(model.joint(f"{side}_finger").qposadr[0]) for side in SIDES]
        self._object_qpos = int(model.joint("object").qposadr[0])
        # qpos entries of the observation, in order; _get_obs turns the hand's entries (offsets
        # from its origin) into positions and the finger's into the opening.
        self._observed_qpos = np.r_[
            self._hand_qpos,
            self._finger_qpos[0],
            np.arange(self._object_qpos, self._object_qpos + 7),
        ]
        self._touch = [int(model.sensor(f"{side}_touch").adr[0]) for side in SIDES]
        self._object_geom = model.geom("object").id
        self._pads = [model.geom(f"{side}_pad").id for side in SIDES]
        self.goal = np.zeros(3)
        self.object_start = np.zeros(2)

    @property
    def object_rest_height(self) -> float:
        """Height of the object's centre when it rests on the table (half its height)."""
        return float(self.model.geom_aabb[self._object_geom, 5])

    def grasped(self) -> bool:
        """Whether both fingertips press on the object (touch sensors of the last step)."""
        sensors = self.data.sensordata
        return bool(
            sensors[self._touch[0]] > TOUCH_THRESHOLD and sensors[self._touch[1]] > TOUCH_THRESHOLD
        )

    def finger_penetration(self) -> float:
        """Deepest interpenetration (m, >= 0) between a fingertip pad and the object."""
        contact = self.data.contact
        geoms = contact.geom
        depth = 0.0
        for i in range(self.data.ncon):
            pair = (int(geoms[i, 0]), int(geoms[i, 1]))
            if self._object_geom in pair and (pair[0] in self._pads or pair[1] in self._pads):
                depth = max(depth, -float(contact.dist[i]))
        return depth

    def _get_obs(self) -> np.ndarray:
        qpos = self.data.qpos
        obs = qpos[self._observed_qpos]
        obs[:3] += self._hand_origin
        obs[3] = 1.0 - (qpos[self._finger_qpos[0]] + qpos[self._finger_qpos[1]]) / (
            2 * FINGER_TRAVEL
        )
        if self._observe_goal:
            return np.concatenate((obs, self.goal))
        return obs

    def _actuate(self, action: np.ndarray) -> None:
        """Move the mocap target, set the gripper servos and run one control step."""
        # Plain floats: numpy's clip costs more than the arithmetic on four numbers.
        *move, grip = (min(max(value, -1.0), 1.0) for value in action.tolist())
        target = self._hand_target
        current = target.tolist()
        target[:] = [
            min(max(current[i] + STEP_SIZE * move[i], _LOW[i]), _HIGH[i]) for i in range(3)
        ]
        finger = FINGER_TRAVEL * 0.5 * (1.0 + grip)
        self._step_mujoco_simulation(np.array((finger, finger)), self.frame_skip)

    def reset_model(self) -> np.ndarray:
        """Hand above the table with open fingers (start jittered by the seed), object at rest."""
        noise = self.np_random.uniform(-self._hand_noise, self._hand_noise, size=3)
        hand = HAND_START + noise
        qpos = self.init_qpos.copy()
        qpos[self._hand_qpos] = hand - self._hand_origin
        qpos[self._finger_qpos] = 0.0
        start = self._object_qpos
        qpos[start : start + 7] = (*self.object_start, self.object_rest_height, 1.0, 0, 0, 0)
        self._hand_target[:] = hand
        self._goal_marker[:] = self.goal
        self.set_state(qpos, np.zeros(self.model.nv))
        return self._get_obs()

    def _set_goal(self, goal: np.ndarray) -> None:
        """Set the goal and move its marker (a non-colliding site on a mocap body) there."""
        self.goal = goal
        self._goal_marker[:] = goal
