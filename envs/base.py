"""What every task family shares: task handling, input checks and unstable-physics detection.

Families subclass Gymnasium's MuJoCo v5 envs (reusing their models, observations, ``step`` and
reward terms, overriding ``_get_rew``) and mix in :class:`MetaEnv`, which owns the meta-RL
contract: a task must be set before the env runs, a task of another family or out of range is
refused, and a simulation that diverges ends the episode with ``truncated=True`` and
``info["unstable"] = True`` instead of emitting NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from metarobot.tasks import Task, TaskFamily

StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]

# MuJoCo checks positions, velocities and accelerations every step; on NaN, inf or huge values
# it warns and resets the state, so these counters catch every divergence.
_DIVERGENCE_WARNINGS = tuple(
    int(w)
    for w in (
        mujoco.mjtWarning.mjWARN_BADQPOS,
        mujoco.mjtWarning.mjWARN_BADQVEL,
        mujoco.mjtWarning.mjWARN_BADQACC,
    )
)


def coerce_task(task: Task | Mapping[str, Any] | str) -> Task:
    """Accept a ``Task``, its dict form or its JSON string (as stored in run directories)."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return Task.from_json(task)
    if isinstance(task, Mapping):
        return Task.from_dict(task)
    raise ValueError(f"expected a Task, a task dict or JSON string, got {type(task).__name__}")


class MetaEnv(MujocoEnv):
    """Mixin for MuJoCo task families; subclasses implement ``_apply_task``.

    Subclasses list it first in their bases so that its ``reset``/``step`` wrap the robot env's
    (Gymnasium's ``HalfCheetahEnv`` etc.), whose ``step`` calls the family's ``_get_rew``.
    ``horizon`` is the default episode length; ``gymnasium.make`` enforces it with a
    ``TimeLimit``, and the batched samplers read it directly from the bare env.
    """

    family: ClassVar[TaskFamily]
    horizon: int
    _task: Task | None = None
    _last_obs: np.ndarray | None = None
    # Gymnasium computes cfrc_ext (contact forces) after every step; only families that observe
    # or penalize them pay for it.
    _needs_contact_forces: bool = False

    def _init_meta(self, task: Task | Mapping[str, Any] | str | None, horizon: int | None) -> None:
        """Finish construction; call at the end of the subclass ``__init__``."""
        self.horizon = self.family.horizon if horizon is None else int(horizon)
        if self.horizon <= 0:
            raise ValueError(f"horizon must be a positive number of steps, got {horizon}")
        assert isinstance(self.action_space, Box)
        self._action_low = self.action_space.low.astype(np.float64)
        self._action_high = self.action_space.high.astype(np.float64)
        # Live views into MjData (cheap to read each step, unlike indexing data.warning).
        self._divergence_counters = [self.data.warning[w] for w in _DIVERGENCE_WARNINGS]
        if task is not None:
            self.set_task(coerce_task(task))

    @property
    def task(self) -> Task | None:
        """The current task, or ``None`` before one is set."""
        return self._task

    def set_task(self, task: Task) -> None:
        """Switch to ``task``; physics changes take effect in place on the compiled model."""
        self.family.validate(task)
        self._apply_task(task)
        self._task = task

    def _apply_task(self, task: Task) -> None:
        raise NotImplementedError

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset; ``options={"task": task}`` switches task first."""
        if options and "task" in options:
            self.set_task(coerce_task(options["task"]))
        self._require_task()
        obs, info = super().reset(seed=seed, options=options)
        self._last_obs = obs
        info.update(unstable=False, task=self._task)
        return obs, info

    def step(self, action: np.ndarray) -> StepResult:  # type: ignore[override]
        """Advance one control step; refuses malformed actions and flags diverged physics."""
        task = self._require_task()
        action = self._check_action(action)
        diverged_before = self._divergences()
        obs, reward, terminated, truncated, info = self._robot_step(action)
        if self._divergences() != diverged_before or not math.isfinite(reward):
            return self._unstable_step(task)
        self._last_obs = obs
        info["unstable"] = False
        info["task"] = task
        return obs, float(reward), terminated, truncated, info

    def _robot_step(self, action: np.ndarray) -> StepResult:
        """The robot env's own step (Gymnasium's, calling the family's ``_get_rew``)."""
        return super().step(action)

    def _divergences(self) -> int:
        return sum(counter.number for counter in self._divergence_counters)

    def _unstable_step(self, task: Task) -> StepResult:
        """End the episode on diverged physics, returning the last finite observation."""
        assert self._last_obs is not None
        info: dict[str, Any] = {"unstable": True, "task": task}
        return self._last_obs.copy(), 0.0, False, True, info

    def _require_task(self) -> Task:
        if self._task is None:
            raise RuntimeError(
                f"{type(self).__name__} has no task: call set_task(task) or "
                f"reset(options={{'task': task}}) first, with a task from "
                f"envs.get_family({self.family.name!r}).sample_tasks(...)"
            )
        return self._task

    def _check_action(self, action: np.ndarray) -> np.ndarray:
        array = np.asarray(action, dtype=np.float64)
        if array.shape != self._action_low.shape or not np.isfinite(array).all():
            raise ValueError(
                f"action {np.asarray(action).tolist()} is invalid for {self.family.name}: "
                f"expected {self._action_low.shape[0]} finite values in "
                f"[{self._action_low.tolist()}, {self._action_high.tolist()}]"
            )
        return array

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)
        if self._needs_contact_forces:
            mujoco.mj_rnePostConstraint(self.model, self.data)
