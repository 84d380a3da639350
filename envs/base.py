"""What every task family shares: task handling, input checks and unstable-physics detection.

Families subclass Gymnasium's MuJoCo v5 envs (reusing their models, observations, ``step`` and
reward terms, overriding ``_get_rew``) and mix in :class:`MetaEnv`, which owns the meta-RL
contract on top of a plain Gymnasium env: ``reset()`` with no task given draws one from a split
(so ``gymnasium.make(id)`` then ``reset()`` just works), an explicit task always wins, a task of
another family or out of range is refused, and a simulation that diverges ends the episode with
``truncated=True`` and ``info["unstable"] = True`` instead of emitting NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

from envs.scene import SceneSpec
from metarobot.tasks import SPLITS, Split, Task, TaskFamily

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


# mujoco 4 deprecates the ``settotalmass`` compiler attribute, which Gymnasium's
# half_cheetah.xml still sets. The compiled model is the same; the warning would be printed by
# every process that builds a HalfCheetah env and logged to MUJOCO_LOG.TXT in the user's
# working directory, so it is dropped while our envs compile their models.
_KNOWN_COMPILER_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _warn(message: str) -> None:
    warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


@contextmanager
def known_compiler_warnings_dropped() -> Iterator[None]:
    """Within this block, MuJoCo's known harmless compiler warnings are dropped.

    Any other MuJoCo warning goes to the handler set before (a Python ``RuntimeWarning`` where
    there was none), so nothing unexpected is hidden. MuJoCo's handler is process-wide: keep
    the block to the compilation itself.
    """
    caught: list[str] = []
    previous: Callable[[str], None] | None = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(caught.append)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
        for message in caught:
            if not message.startswith(_KNOWN_COMPILER_WARNINGS):
                (previous or _warn)(message)


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

    Subclasses list it first in their bases, before the robot env (Gymnasium's
    ``HalfCheetahEnv`` etc.), so that its ``__init__``, ``reset`` and ``step`` wrap the robot's.
    ``horizon`` is the default episode length; ``gymnasium.make`` enforces it with a
    ``TimeLimit``, and the batched samplers read it directly from the bare env.

    Which task an episode runs, at ``reset``:

    1. ``options={"task": task}``, or a task given since the last reset (``set_task``, or the
       constructor's ``task``): an explicit task always wins.
    2. Otherwise a task is drawn from the split ``task_split``: at the first reset, at every
       reset with ``resample_tasks`` (a multi-task env for SB3, CleanRL or RLlib), and at a
       seeded reset whose current task was itself drawn (so ``reset(seed=s)`` alone fixes the
       task, in any process). Any other reset keeps the current task: without
       ``resample_tasks`` the env is the single-task env a Gymnasium user expects.

    Draws come from a child of the env's seeded generator (``np_random.spawn``), not from
    ``np_random`` itself: the reset noise and trajectory of a drawn task are those of the same
    task given explicitly with the same seed. ``info["task"]`` always names the running task.
    """

    family: ClassVar[TaskFamily]
    horizon: int
    task_split: Split
    """The split that tasks are drawn from when none is given."""
    resample_tasks: bool
    """Whether every reset without an explicit task draws a new one."""
    _task: Task | None = None
    _task_is_new = False  # given explicitly since the last reset
    _task_was_drawn = False
    _task_rng: np.random.Generator | None = None
    _last_obs: np.ndarray | None = None
    # Gymnasium computes cfrc_ext (contact forces) after every step; only families that observe
    # or penalize them pay for it.
    _needs_contact_forces: bool = False
    can_share_model: ClassVar[bool] = False
    """Whether envs of this family may share one ``MjModel``: true where tasks change only the
    reward or the initial state, never the model (tests/envs check it for every family)."""
    scene: ClassVar[SceneSpec | None] = None
    """How videos film the family (camera, markers, caption); ``None``: a generic scene."""
    info_keys: ClassVar[tuple[str, ...]]
    """The numeric ``info`` entries (reward terms, diagnostics, ``success``) of the family's steps.

    Samplers record exactly these as ``Episodes.infos``, allocated before the first step, and
    refuse a step that reports any other number; ``unstable`` and the task record are the
    contract's own and not listed. tests/envs checks that steps report just these.
    """

    def __init__(
        self,
        task: Task | Mapping[str, Any] | str | None = None,
        horizon: int | None = None,
        task_split: Split = "train",
        resample_tasks: bool = False,
        **kwargs: Any,
    ) -> None:
        """Build the robot env, then what the family and the task handling need.

        Args:
            task: Initial task (optional: ``reset`` draws one when none is given).
            horizon: Episode length (default: the family's).
            task_split: Split that tasks are drawn from, ``"train"`` or ``"test"``.
            resample_tasks: Draw a new task at every reset that is given none.
            **kwargs: Passed to the robot env, the next base class (Gymnasium's reward weights,
                ``render_mode``, ``width``, ...).
        """
        super().__init__(**kwargs)
        self._init_family()
        self._init_meta(task, horizon, task_split, resample_tasks)

    def _init_family(self) -> None:
        """Prepare what the family needs once the robot env is built, before a task applies."""

    def _init_meta(
        self,
        task: Task | Mapping[str, Any] | str | None,
        horizon: int | None,
        task_split: Split,
        resample_tasks: bool,
    ) -> None:
        """Finish construction (``__init__`` does; an env that builds its robot itself calls it)."""
        self.horizon = self.family.horizon if horizon is None else int(horizon)
        if self.horizon <= 0:
            raise ValueError(f"horizon must be a positive number of steps, got {horizon}")
        if task_split not in SPLITS:
            raise ValueError(f"task_split must be one of {SPLITS}, got {task_split!r}")
        if not isinstance(resample_tasks, bool):
            raise ValueError(f"resample_tasks must be True or False, got {resample_tasks!r}")
        self.task_split = task_split
        self.resample_tasks = resample_tasks
        assert isinstance(self.action_space, Box)
        self._action_low = self.action_space.low.astype(np.float64)
        self._action_high = self.action_space.high.astype(np.float64)
        self._dt = self.dt  # the control step, as a float read every step
        # A live view of MjData's warning counters, read twice per step.
        self._divergence_counts = self.data.warning.number
        if task is not None:
            self.set_task(coerce_task(task))

    @property
    def task(self) -> Task | None:
        """The current task, or ``None`` before one is set or drawn."""
        return self._task

    def set_task(self, task: Task) -> None:
        """Run ``task`` from the next reset on; physics changes apply in place on the model."""
        self._switch_task(task)
        self._task_is_new = True
        self._task_was_drawn = False

    def _switch_task(self, task: Task) -> None:
        self.family.validate(task)
        self._apply_task(task)
        self._task = task

    def _apply_task(self, task: Task) -> None:
        raise NotImplementedError

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset into the task of ``options["task"]``, the one set, or a drawn one (see above)."""
        if options and "task" in options:
            self.set_task(coerce_task(options["task"]))
        if seed is not None:
            self._task_rng = None  # a seeded reset restarts the stream of drawn tasks
        if self._draws_task(seed):
            self._switch_task(self._draw_task(seed))
            self._task_was_drawn = True
        self._task_is_new = False
        obs, info = super().reset(seed=seed, options=options)
        self._last_obs = obs
        info.update(unstable=False, task=self._task)
        return obs, info

    def _draws_task(self, seed: int | None) -> bool:
        if self._task is None:
            return True
        if self._task_is_new:
            return False
        return self.resample_tasks or (seed is not None and self._task_was_drawn)

    def _draw_task(self, seed: int | None) -> Task:
        """A task of ``task_split`` from the env's task stream (a child of ``np_random``)."""
        if self._task_rng is None:
            if seed is not None:
                # Seed np_random before the task applies; the physics reset seeds it again alike.
                gymnasium.Env.reset(self, seed=seed)
            self._task_rng = self.np_random.spawn(1)[0]
        draw = int(self._task_rng.integers(np.iinfo(np.int64).max))
        return self.family.sample_tasks(1, self.task_split, seed=draw)[0]

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

    def _step_along_x(self, action: np.ndarray) -> tuple[float, float]:
        """One control step of a planar robot (``qpos[0]`` is x): its new x and mean x velocity.

        Plain floats, not numpy scalars: the same values, a few times faster to compute with.
        """
        qpos = self.data.qpos
        x_before = float(qpos[0])
        self._step_mujoco_simulation(action, self.frame_skip)
        x_after = float(qpos[0])
        return x_after, (x_after - x_before) / self._dt

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
                f"{type(self).__name__} has no task yet: call reset() first (it draws one from "
                f"the {self.task_split!r} split), or set_task(task) with a task from "
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
            return self._compile()
        key = (self.fullpath, self.width, self.height)
        model = _SHARED_MODELS.get(key)
        if model is None:
            model, data = self._compile()
            _SHARED_MODELS[key] = model
            return model, data
        return model, mujoco.MjData(model)

    def _compile(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        with known_compiler_warnings_dropped():
            return super()._initialize_simulation()

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        self.data.ctrl[:] = ctrl
        mujoco.mj_step(self.model, self.data, nstep=n_frames)
        if self._needs_contact_forces:
            mujoco.mj_rnePostConstraint(self.model, self.data)
