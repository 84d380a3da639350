"""What every task family shares: task handling, input checks and unstable-physics detection.

Families subclass Gymnasium's MuJoCo v5 envs (reusing their models, observations, ``step`` and
reward terms, overriding ``_get_rew``) and mix in :class:`MetaEnv`, which owns the meta-RL
contract: a task must be set before the env runs, a task of another family or out of range is
refused, and a simulation that diverges ends the episode with ``truncated=True`` and
``info["unstable"] = True`` instead of emitting NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from metarobot.tasks import Task, TaskFamily

StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]

# MuJoCo checks positions, velocities and accelerations every step; on NaN, inf or huge values
# it warns and resets the state, so these counters catch every divergence.
_BADQPOS = int(mujoco.mjtWarning.mjWARN_BADQPOS)
_BADQVEL = int(mujoco.mjtWarning.mjWARN_BADQVEL)
_BADQACC = int(mujoco.mjtWarning.mjWARN_BADQACC)


# Compiled models shared by the envs built inside ``sharing_models()``, keyed by model file and
# offscreen size. Shared models stay pristine: only families whose tasks never write the model
# may share one (``MetaEnv.can_share_model``).
_SHARED_MODELS: dict[tuple[str, int, int], mujoco.MjModel] = {}
_SHARING = ContextVar("metarobot_sharing_models", default=False)


@contextmanager
def sharing_models() -> Iterator[None]:
    """Within this block, new envs reuse one compiled ``MjModel`` per model file.

    Samplers step hundreds of envs of one family per process; with one model between them the
    physics reads one copy of the model instead of hundreds, which cuts the cache misses of
    round-robin stepping (about an eighth of a HalfCheetah step). Each env keeps its own
    ``MjData``. Only for families with ``can_share_model``; see :func:`envs.make`.
    """
    token = _SHARING.set(True)
    try:
        yield
    finally:
        _SHARING.reset(token)


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
    can_share_model: ClassVar[bool] = False
    """Whether envs of this family may share one ``MjModel``: true where tasks change only the
    reward or the initial state, never the model (tests/envs check it for every family)."""

    def _init_meta(self, task: Task | Mapping[str, Any] | str | None, horizon: int | None) -> None:
        """Finish construction; call at the end of the subclass ``__init__``."""
        self.horizon = self.family.horizon if horizon is None else int(horizon)
        if self.horizon <= 0:
            raise ValueError(f"horizon must be a positive number of steps, got {horizon}")
        assert isinstance(self.action_space, Box)
        self._action_low = self.action_space.low.astype(np.float64)
        self._action_high = self.action_space.high.astype(np.float64)
        # A live view of MjData's warning counters, read twice per step.
        self._divergence_counts = self.data.warning.number
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
        task = self._task if self._task is not None else self._require_task()
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
        counts = self._divergence_counts
        return int(counts[_BADQPOS] + counts[_BADQVEL] + counts[_BADQACC])

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
        # A finite dot product proves every entry finite, and costs a third of np.isfinite.
        finite = math.isfinite(array @ array) if array.ndim == 1 else False
        if array.shape != self._action_low.shape or not (finite or np.isfinite(array).all()):
            raise ValueError(
                f"action {np.asarray(action).tolist()} is invalid for {self.family.name}: "
                f"expected {self._action_low.shape[0]} finite values in "
                f"[{self._action_low.tolist()}, {self._action_high.tolist()}]"
            )
        return array

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        if not (_SHARING.get() and self.can_share_model):
            return super()._initialize_simulation()
        key = (self.fullpath, self.width, self.height)
        model = _SHARED_MODELS.get(key)
        if model is None:
            model, data = super()._initialize_simulation()
            _SHARED_MODELS[key] = model
            return model, data
        return model, mujoco.MjData(model)

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)
        if self._needs_contact_forces:
            mujoco.mj_rnePostConstraint(self.model, self.data)
