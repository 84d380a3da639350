"""The environment half of every sampler: the env contract, and stepping envs into flat buffers.

A sampler's environments come from an :data:`EnvFn` and follow a small contract that
:func:`describe_env` checks and summarizes as an :class:`EnvSpec`: ``set_task``, a default
``horizon``, 1-D Box spaces, and ``info_keys``, the numeric ``info`` entries its steps report.
:class:`EnvStepper` steps a group of them into :class:`StepBuffers`; worker processes run it on
their share of the environments and the in-process backend on all of them, and sharing it is
what makes the backends agree bit for bit. It needs numpy only (no torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from metarobot.tasks import Task

EnvFn = Callable[[], gymnasium.Env]
"""Picklable factory of one bare env, e.g. ``functools.partial(envs.make, "HalfCheetahVel")``."""


@dataclass(frozen=True)
class EnvSpec:
    """What a sampler needs to know about the environments its factory makes.

    Attributes:
        obs_dim: Length of the (flat, 1-D) observation.
        act_dim: Length of the (flat, 1-D) action.
        action_low: Lower action bounds, as the float values of the float32 action space.
        action_high: Upper action bounds.
        horizon: The env's default episode length (``env.horizon``).
        info_keys: The numeric ``info`` entries the env's steps report (``env.info_keys``),
            sorted: the keys of ``Episodes.infos``, allocated before the first step.
    """

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    horizon: int
    info_keys: tuple[str, ...]


def describe_env(env: Any) -> EnvSpec:
    """Check that ``env`` follows the sampler's env contract and summarize it.

    Raises:
        TypeError: If the env lacks ``set_task``/``horizon``/``info_keys`` or its spaces are not
            1-D Boxes.
    """
    name = type(env).__name__
    if not callable(getattr(env, "set_task", None)):
        raise TypeError(f"{name} has no set_task(task) method; samplers need a task-settable env")
    horizon = getattr(env, "horizon", None)
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise TypeError(
            f"{name}.horizon must be a positive int (default episode length), got {horizon!r}"
        )
    spaces = {"observation_space": env.observation_space, "action_space": env.action_space}
    for attr, space in spaces.items():
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"{name}.{attr} must be a 1-D gymnasium Box, got {space!r}")
    low = np.asarray(env.action_space.low, dtype=np.float32)
    high = np.asarray(env.action_space.high, dtype=np.float32)
    return EnvSpec(
        obs_dim=int(env.observation_space.shape[0]),
        act_dim=int(env.action_space.shape[0]),
        action_low=tuple(float(x) for x in low),
        action_high=tuple(float(x) for x in high),
        horizon=int(horizon),
        info_keys=_declared_info_keys(env),
    )


def _declared_info_keys(env: Any) -> tuple[str, ...]:
    name = type(env).__name__
    keys = getattr(env, "info_keys", None)
    if not isinstance(keys, tuple | list) or not all(isinstance(key, str) for key in keys):
        raise TypeError(
            f"{name}.info_keys must be a tuple of the numeric info keys its steps report "
            f"(reward terms, success, ...; () for none), got {keys!r}"
        )
    if len(set(keys)) != len(keys) or "unstable" in keys:
        raise TypeError(
            f"{name}.info_keys must name each key once and not 'unstable' (episodes have a "
            f"field of their own for it), got {keys!r}"
        )
    return tuple(sorted(keys))


class StepBuffers:
    """Per-step arrays of ``capacity`` environments, laid out in one flat byte buffer.

    The buffer is ordinary memory for the in-process backend and shared memory for the process
    backend, where every worker maps the same layout and writes only its own rows. Rows are
    environments (global index ``task * E + episode``), so a worker's share is contiguous.

    Attributes:
        obs: ``[C, obs_dim]`` float32, the current observation (written by ``reset``/``step``).
        actions: ``[C, act_dim]`` float32, clipped actions to apply (written by the driver).
        rewards: ``[C]`` float64.
        terminated: ``[C]`` bool.
        truncated: ``[C]`` bool.
        unstable: ``[C]`` bool, ``info["unstable"]`` of the last step.
        active: ``[C]`` bool, environments still running (written by the driver).
        infos: ``[C, len(info_keys)]`` float64, the numeric info values, one column per key.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    unstable: np.ndarray
    active: np.ndarray
    infos: np.ndarray

    def __init__(self, buffer: Any, capacity: int, spec: EnvSpec) -> None:
        self.capacity = capacity
        layout, _ = self.layout(capacity, spec)
        for name, dtype, shape, offset in layout:
            setattr(self, name, np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset))

    @staticmethod
    def layout(
        capacity: int, spec: EnvSpec
    ) -> tuple[list[tuple[str, type, tuple[int, ...], int]], int]:
        """``(name, dtype, shape, byte offset)`` of every array, and the total size in bytes."""
        fields: list[tuple[str, type, tuple[int, ...]]] = [
            ("obs", np.float32, (capacity, spec.obs_dim)),
            ("actions", np.float32, (capacity, spec.act_dim)),
            ("rewards", np.float64, (capacity,)),
            ("infos", np.float64, (capacity, len(spec.info_keys))),
            ("terminated", np.bool_, (capacity,)),
            ("truncated", np.bool_, (capacity,)),
            ("unstable", np.bool_, (capacity,)),
            ("active", np.bool_, (capacity,)),
        ]
        layout = []
        offset = 0
        for name, dtype, shape in fields:
            layout.append((name, dtype, shape, offset))
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            offset += -(-size // 64) * 64  # cache-line aligned, so workers never share a line
        return layout, max(offset, 64)

    @classmethod
    def allocate(cls, capacity: int, spec: EnvSpec) -> StepBuffers:
        """Buffers in ordinary memory of this process."""
        _, nbytes = cls.layout(capacity, spec)
        return cls(bytearray(nbytes), capacity, spec)

    def release(self) -> None:
        """Drop the array views so that the underlying buffer can be closed."""
        for name, value in list(vars(self).items()):
            if isinstance(value, np.ndarray):
                del self.__dict__[name]


# Exact types taken as numbers without further checks: the common case, kept cheap because it
# runs for every info entry of every step.
_SCALAR_TYPES = frozenset(
    {float, int, bool, np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_}
)


def as_number(value: object) -> float | None:
    """``value`` as a float if it is a numeric scalar (bools count), else ``None``.

    This is what makes an ``info`` entry numeric, i.e. recorded by samplers and declared in the
    env's ``info_keys``; text, arrays and task records are neither.
    """
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return float(value)
    return None


class EnvStepper:
    """The environments that one process steps, created once and reused across calls.

    Numeric ``info`` entries go to the column of their key in :attr:`EnvSpec.info_keys`; a
    numeric entry under any other key is an error (the env must declare it), and entries that
    are not numbers are not recorded.
    """

    def __init__(self, env_fn: EnvFn) -> None:
        self._env_fn = env_fn
        self.envs: list[Any] = []
        self.spec = self._describe()
        self._columns = {key: column for column, key in enumerate(self.spec.info_keys)}
        self._skipped_types: set[type] = set()

    def _describe(self) -> EnvSpec:
        self.ensure(1)
        return describe_env(self.envs[0])

    def ensure(self, count: int) -> None:
        """Create environments until there are at least ``count``."""
        while len(self.envs) < count:
            self.envs.append(self._env_fn())

    def reset(
        self, buffers: StepBuffers, lo: int, tasks: Sequence[Task], seeds: Sequence[int]
    ) -> None:
        """Set the task of and reset environments ``0..len(tasks)``, writing rows ``lo..``."""
        self.ensure(len(tasks))
        for j, (task, seed) in enumerate(zip(tasks, seeds, strict=True)):
            env = self.envs[j]
            env.set_task(task)
            obs, _ = env.reset(seed=int(seed))
            buffers.obs[lo + j] = obs

    def step(self, buffers: StepBuffers, lo: int, hi: int) -> None:
        """Step the active environments of rows ``lo..hi``.

        Raises:
            TypeError: If an env reports a numeric info key it does not declare, or a
                declared key with a value that is not a number.
        """
        buffers.rewards[lo:hi] = 0.0
        buffers.infos[lo:hi] = 0.0
        buffers.terminated[lo:hi] = False
        buffers.truncated[lo:hi] = False
        buffers.unstable[lo:hi] = False
        # A private copy: an env may keep a reference to its action, and the driver rewrites the
        # shared rows on the next step.
        actions = buffers.actions[lo:hi].copy()
        active = np.flatnonzero(buffers.active[lo:hi])
        # Results gather in lists and go into the buffers with one assignment per array: a
        # numpy item assignment per environment and field costs more than the env's own code.
        observations, rewards, terminated, truncated, unstable = [], [], [], [], []
        info_rows, info_columns, info_values = [], [], []
        columns = self._columns
        envs = self.envs
        scalar_types, skipped_types = _SCALAR_TYPES, self._skipped_types
        for j in active.tolist():
            obs, reward, term, trunc, info = envs[j].step(actions[j])
            observations.append(obs)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            unstable.append(info.get("unstable", False))
            for key, value in info.items():
                column = columns.get(key)
                if column is None:
                    kind = type(value)
                    if kind in skipped_types or key == "unstable":  # it has its own field
                        continue
                    if as_number(value) is None:  # text, arrays, task records: not recorded
                        if kind is not np.ndarray:  # (a 0-d array would count)
                            skipped_types.add(kind)
                        continue
                    raise self._undeclared(envs[j], key, value)
                if type(value) not in scalar_types:
                    value = as_number(value)
                    if value is None:
                        raise TypeError(
                            f"{type(envs[j]).__name__} reported info[{key!r}] = "
                            f"{info[key]!r}; its info_keys declare it, so it must be a number"
                        )
                info_rows.append(j)
                info_columns.append(column)
                info_values.append(value)
        if observations:
            rows = active + lo
            buffers.obs[rows] = observations
            buffers.rewards[rows] = rewards
            buffers.terminated[rows] = terminated
            buffers.truncated[rows] = truncated
            buffers.unstable[rows] = unstable
            if info_values:
                buffers.infos[np.add(info_rows, lo), info_columns] = info_values

    def _undeclared(self, env: Any, key: str, value: object) -> TypeError:
        name = type(env).__name__
        return TypeError(
            f"{name} reported the numeric info[{key!r}] = {value!r}, which its info_keys "
            f"{self.spec.info_keys} do not declare; add {key!r} to {name}.info_keys so that "
            "samplers record it"
        )

    def close(self) -> None:
        """Close every environment."""
        for env in self.envs:
            env.close()
        self.envs = []
