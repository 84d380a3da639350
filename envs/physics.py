"""Dynamics-parameter families: Hopper and Walker2d with varied masses, inertias, damping, friction.

A task is data: for each varied ``MjModel`` field, one multiplier per element (body, dof or geom),
drawn log-uniformly in ``1.5^[-3, 3]`` as in the ProMP and PEARL suites. Multipliers apply to the
compiled model in place (never rebuilt) relative to its pristine values, so switching back to a
task restores the model bit for bit; MuJoCo Warp batches the same fields per world, which is what
lets a GPU backend apply these tasks to many worlds later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from envs.base import MetaEnv, StepResult
from envs.scene import SceneSpec, View
from metarobot.tasks import ParamSpec, SplitRule, Task, TaskFamily

LOW, HIGH = 1.5**-3, 1.5**3


_WALKER_VIEW = View(distance=3.2, elevation=-10.0, lookat_height=0.8)


def _dynamics_caption(task: Task, info: Mapping[str, Any]) -> str:
    which = f"task {task.index}" if task.index >= 0 else "custom task"
    caption = f"varied dynamics ({task.split} {which})"
    if "x_velocity" in info:
        caption += f", v {info['x_velocity']:+.2f} m/s"
    return caption


@dataclass(frozen=True)
class PhysicsField:
    """One varied model field and the elements it touches.

    Attributes:
        param: Task parameter name (also the ``MjModel`` attribute, e.g. ``"body_mass"``).
        rows: Indices of the elements varied (e.g. every body but the world).
        doc: What it changes, for ``metarobot list``.
    """

    param: str
    rows: tuple[int, ...]
    doc: str

    def spec(self) -> ParamSpec:
        """The task parameter: one log-uniform multiplier per element."""
        return ParamSpec(self.param, LOW, HIGH, size=len(self.rows), log=True, doc=self.doc)


def physics_fields(
    nbody: int, damped_dofs: tuple[int, ...], ngeom: int
) -> tuple[PhysicsField, ...]:
    """The ProMP/PEARL field set for a planar walker of the given sizes."""
    bodies = tuple(range(1, nbody))
    return (
        PhysicsField("body_mass", bodies, "mass multiplier per body"),
        PhysicsField("body_inertia", bodies, "inertia multiplier per body"),
        PhysicsField("dof_damping", damped_dofs, "damping multiplier per actuated joint"),
        PhysicsField("geom_friction", tuple(range(ngeom)), "friction multiplier per geom"),
    )


HOPPER_FIELDS = physics_fields(nbody=5, damped_dofs=(3, 4, 5), ngeom=5)
WALKER2D_FIELDS = physics_fields(nbody=8, damped_dofs=(3, 4, 5, 6, 7, 8), ngeom=8)

# Two bins per multiplier: a task is test when the number of "above 1" multipliers is a multiple
# of 5, so both splits span the whole range of every multiplier.
_PHYSICS_SPLIT = SplitRule(cells=2, period=5)

HOPPER_PARAMS = TaskFamily(
    name="HopperParams",
    specs=tuple(f.spec() for f in HOPPER_FIELDS),
    split_rule=_PHYSICS_SPLIT,
    horizon=200,
    doc="hop forward under varied masses, inertias, damping and friction",
)

WALKER2D_PARAMS = TaskFamily(
    name="Walker2dParams",
    specs=tuple(f.spec() for f in WALKER2D_FIELDS),
    split_rule=_PHYSICS_SPLIT,
    horizon=200,
    doc="walk forward under varied masses, inertias, damping and friction",
)


class _PhysicsTask(MetaEnv):
    """A planar walker (Gymnasium's Hopper or Walker2d, the next base) under physics tasks.

    Tasks apply multipliers on model fields, relative to pristine values kept to restore from.
    Keywords are :class:`~envs.base.MetaEnv`'s and the Gymnasium env's.
    """

    fields: ClassVar[tuple[PhysicsField, ...]]
    info_keys = (
        "x_position",
        "z_distance_from_origin",
        "x_velocity",
        "reward_forward",
        "reward_ctrl",
        "reward_survive",
    )
    # What the step reads from Gymnasium's Hopper-v5 and Walker2d-v5, which both define these.
    is_healthy: bool
    _forward_reward_weight: float
    _healthy_reward: float
    _ctrl_cost_weight: float
    _terminate_when_unhealthy: bool
    _get_obs: Callable[[], np.ndarray]

    def _init_family(self) -> None:
        self._pristine = {f.param: getattr(self.model, f.param).copy() for f in self.fields}
        for f in self.fields:
            size = len(getattr(self.model, f.param))
            if max(f.rows) >= size:
                raise RuntimeError(
                    f"{self.family.name}: model has {size} rows of {f.param}, expected more than "
                    f"{max(f.rows)} (did Gymnasium's model file change?)"
                )
        self._z_start = float(self.init_qpos[1])

    def _apply_task(self, task: Task) -> None:
        for f in self.fields:
            target = getattr(self.model, f.param)
            pristine = self._pristine[f.param]
            target[:] = pristine
            rows = np.asarray(f.rows)
            multipliers = task.vector(f.param)
            target[rows] = pristine[rows] * multipliers.reshape((-1,) + (1,) * (target.ndim - 1))
        # Derived constants (subtree masses, inverse weights used by the constraint solver)
        # follow the new masses and inertias; recomputing them from pristine values is exact.
        mujoco.mj_setConst(self.model, self.data)

    def _robot_step(self, action: np.ndarray) -> StepResult:
        # Gymnasium's Hopper-v5 and Walker2d-v5 step, computed leanly: theirs checks health
        # twice per step (for the survival reward, then for termination) and the action's shape
        # once more.
        x_after, x_velocity = self._step_along_x(action)
        healthy = bool(self.is_healthy)
        forward = self._forward_reward_weight * x_velocity
        survive = self._healthy_reward if healthy else 0.0
        ctrl_cost = self._ctrl_cost_weight * float(action @ action)
        info = {
            "x_position": x_after,
            "z_distance_from_origin": float(self.data.qpos[1]) - self._z_start,
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
            "reward_survive": survive,
        }
        if self.render_mode == "human":
            self.render()
        terminated = not healthy and self._terminate_when_unhealthy
        return self._get_obs(), forward + survive - ctrl_cost, terminated, False, info


class HopperParamsEnv(_PhysicsTask, HopperEnv):
    """Hopper-v5 under task-specific dynamics (Rothfuss et al. 2019; Rakelly et al. 2019)."""

    scene = SceneSpec(_WALKER_VIEW, caption=_dynamics_caption)

    family = HOPPER_PARAMS
    fields = HOPPER_FIELDS


class Walker2dParamsEnv(_PhysicsTask, Walker2dEnv):
    """Walker2d-v5 under task-specific dynamics (Rothfuss et al. 2019; Rakelly et al. 2019)."""

    scene = SceneSpec(_WALKER_VIEW, caption=_dynamics_caption)

    family = WALKER2D_PARAMS
    fields = WALKER2D_FIELDS
