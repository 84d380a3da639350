"""The environment half of every sampler: stepping a slice of environments into flat buffers.

Worker processes run this code on their slice of the environments and the in-process backend
runs it on all of them; sharing it is what makes the backends agree bit for bit. Also here: the
loop a worker process serves its driver with (:func:`serve`). It needs numpy only (no torch).
"""

from __future__ import annotations

import pickle
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Protocol

import gymnasium
import numpy as np

from metarobot.tasks import Task

EnvFn = Callable[[], gymnasium.Env]

MAX_INFO_KEYS = 64
"""Numeric ``info`` keys one slice of environments may report within one ``sample`` call."""

# One-byte messages of the worker protocol; everything rarer than a step is a pickled tuple.
STEP = b"s"
CLOSE = b"x"
REPLY_OK = b"."
REPLY_KEYS = b"k"  # followed by the pickled list of info keys first seen in this step
REPLY_ERROR = b"e"  # followed by the pickled (exception, formatted traceback)


@dataclass(frozen=True)
class EnvSpec:
    """What a sampler needs to know about the environments its factory makes.

    Attributes:
        obs_dim: Length of the (flat, 1-D) observation.
        act_dim: Length of the (flat, 1-D) action.
        action_low: Lower action bounds, as the float values of the float32 action space.
        action_high: Upper action bounds.
        horizon: The env's default episode length (``env.horizon``).
    """

    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    horizon: int


def describe_env(env: Any) -> EnvSpec:
    """Check that ``env`` follows the sampler's env contract and summarize it.

    Raises:
        TypeError: If the env lacks ``set_task``/``horizon`` or its spaces are not 1-D Boxes.
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
    )


class StepBuffers:
    """Per-step arrays of ``capacity`` environments, laid out in one flat byte buffer.

    The buffer is ordinary memory for the in-process backend and shared memory for the process
    backend, where every worker maps the same layout and writes only its own rows. Rows are
    environments (global index ``task * E + episode``), so a worker's slice is contiguous.

    Attributes:
        obs: ``[C, obs_dim]`` float32, the current observation (written by ``reset``/``step``).
        actions: ``[C, act_dim]`` float32, clipped actions to apply (written by the driver).
        rewards: ``[C]`` float64.
        terminated: ``[C]`` bool.
        truncated: ``[C]`` bool.
        unstable: ``[C]`` bool, ``info["unstable"]`` of the last step.
        active: ``[C]`` bool, environments still running (written by the driver).
        infos: ``[C, MAX_INFO_KEYS]`` float64, numeric info values in per-slice key slots.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    unstable: np.ndarray
    active: np.ndarray
    infos: np.ndarray

    def __init__(self, buffer: Any, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = capacity
        layout, _ = self.layout(capacity, obs_dim, act_dim)
        for name, dtype, shape, offset in layout:
            setattr(self, name, np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset))

    @staticmethod
    def layout(
        capacity: int, obs_dim: int, act_dim: int
    ) -> tuple[list[tuple[str, type, tuple[int, ...], int]], int]:
        """``(name, dtype, shape, byte offset)`` of every array, and the total size in bytes."""
        fields: list[tuple[str, type, tuple[int, ...]]] = [
            ("obs", np.float32, (capacity, obs_dim)),
            ("actions", np.float32, (capacity, act_dim)),
            ("rewards", np.float64, (capacity,)),
            ("infos", np.float64, (capacity, MAX_INFO_KEYS)),
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

    def release(self) -> None:
        """Drop the array views so that the underlying buffer can be closed."""
        for name, *_ in self.layout(0, 0, 0)[0]:
            self.__dict__.pop(name, None)


# Exact types taken as numbers without further checks: the common case, kept cheap because it
# runs for every info entry of every step.
_SCALAR_TYPES = frozenset(
    {float, int, bool, np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_}
)


def _as_number(value: object) -> float | None:
    """``value`` as a float if it is a numeric scalar (bools count), else ``None``."""
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return float(value)
    return None


class EnvSlice:
    """The environments that one process steps, created once and reused across calls.

    Numeric ``info`` keys get slots in the order this slice first sees them during a call; the
    driver learns each new key from the list that :meth:`step` returns.
    """

    def __init__(self, env_fn: EnvFn) -> None:
        self._env_fn = env_fn
        self.envs: list[Any] = []
        self.info_keys: list[str] = []
        self._slots: dict[str, int] = {}
        self._skipped_types: set[type] = set()

    def ensure(self, count: int) -> None:
        """Create environments until there are at least ``count``."""
        while len(self.envs) < count:
            self.envs.append(self._env_fn())

    def spec(self) -> EnvSpec:
        """Describe the environments (creating the first one if needed)."""
        self.ensure(1)
        return describe_env(self.envs[0])

    def reset(
        self, buffers: StepBuffers, lo: int, tasks: Sequence[Task], seeds: Sequence[int]
    ) -> None:
        """Set the task of and reset environments ``0..len(tasks)``, writing rows ``lo..``."""
        self.ensure(len(tasks))
        self.info_keys = []
        self._slots = {}
        for j, (task, seed) in enumerate(zip(tasks, seeds, strict=True)):
            env = self.envs[j]
            env.set_task(task)
            obs, _ = env.reset(seed=int(seed))
            buffers.obs[lo + j] = obs

    def step(self, buffers: StepBuffers, lo: int, hi: int) -> list[str]:
        """Step the active environments of rows ``lo..hi``; return info keys new in this step."""
        known = len(self.info_keys)
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
        info_rows, info_slots, info_values = [], [], []
        slots = self._slots
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
                kind = type(value)
                if kind not in scalar_types:
                    if kind in skipped_types:
                        continue
                    value = _as_number(value)
                    if value is None:  # text, arrays, task records: not per-step numbers
                        if kind is not np.ndarray:  # (a 0-d array would count)
                            skipped_types.add(kind)
                        continue
                slot = slots.get(key)
                if slot is None:
                    if key == "unstable":  # has its own field
                        continue
                    slot = self._add_key(key)
                info_rows.append(j)
                info_slots.append(slot)
                info_values.append(value)
        if observations:
            rows = active + lo
            buffers.obs[rows] = observations
            buffers.rewards[rows] = rewards
            buffers.terminated[rows] = terminated
            buffers.truncated[rows] = truncated
            buffers.unstable[rows] = unstable
            if info_values:
                buffers.infos[np.add(info_rows, lo), info_slots] = info_values
        return self.info_keys[known:]

    def _add_key(self, key: str) -> int:
        if len(self.info_keys) >= MAX_INFO_KEYS:
            raise RuntimeError(
                f"environments reported more than {MAX_INFO_KEYS} numeric info keys "
                f"({self.info_keys[:5]}... then {key!r}); the sampler keeps at most that many"
            )
        self._slots[key] = len(self.info_keys)
        self.info_keys.append(key)
        return self._slots[key]

    def close(self) -> None:
        """Close every environment."""
        for env in self.envs:
            env.close()
        self.envs = []


class Handler(Protocol):
    """What a worker process runs: see :func:`serve`."""

    def hello(self) -> bytes:
        """The first answer, before any message (e.g. the pickled ``EnvSpec``)."""
        ...

    def handle(self, message: bytes) -> bytes:
        """The answer to one message."""
        ...

    def close(self) -> None:
        """Release the environments."""
        ...


def serve(conn: Connection, build: Callable[[], Handler]) -> None:
    """Entry point of a worker process: answer the driver over ``conn`` until it is done.

    Protocol (the worker answers every message exactly once): the first answer, before any
    message, is ``hello()`` of the handler that ``build`` returns; each message is then answered
    with ``handle(message)``; ``CLOSE`` is answered ``REPLY_OK`` and ends the worker. Any
    exception is answered with ``REPLY_ERROR`` and the worker keeps serving; an end of file on
    the pipe (the driver is gone) ends it quietly.
    """
    # Ctrl-C goes to the whole process group; let the driver handle it and close us cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler: Handler | None = None
    try:
        try:
            handler = build()
            reply = handler.hello()
        except Exception as exc:
            reply = error_reply(exc)
        conn.send_bytes(reply)
        while True:
            message = conn.recv_bytes()
            if message == CLOSE:
                conn.send_bytes(REPLY_OK)
                return
            try:
                if handler is None:
                    raise RuntimeError("this sampler worker failed to start")
                reply = handler.handle(message)
            except Exception as exc:
                reply = error_reply(exc)
            conn.send_bytes(reply)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the driver went away; nothing left to answer
    finally:
        if handler is not None:
            handler.close()


class LockstepWorker:
    """The handler of a worker process that steps a slice of environments in lockstep.

    ``STEP`` steps the slice and answers ``REPLY_OK`` or ``REPLY_KEYS`` + new info keys; a
    pickled ``("attach", shm_name, capacity, obs_dim, act_dim)`` maps the driver's shared
    buffers, and ``("reset", lo, hi, tasks, seeds)`` resets the slice into rows ``lo..hi``.
    """

    def __init__(self, env_fn: EnvFn) -> None:
        self._envs = EnvSlice(env_fn)
        self._shm: SharedMemory | None = None
        self._buffers: StepBuffers | None = None
        self._rows = (0, 0)

    def hello(self) -> bytes:
        return pickle.dumps(self._envs.spec())

    def handle(self, message: bytes) -> bytes:
        if message == STEP:
            assert self._buffers is not None
            new_keys = self._envs.step(self._buffers, *self._rows)
            return REPLY_KEYS + pickle.dumps(new_keys) if new_keys else REPLY_OK
        command, *args = pickle.loads(message)
        if command == "attach":
            name, capacity, obs_dim, act_dim = args
            self._detach()
            self._shm = SharedMemory(name=name)
            self._buffers = StepBuffers(self._shm.buf, capacity, obs_dim, act_dim)
        elif command == "reset":
            assert self._buffers is not None
            lo, hi, tasks, seeds = args
            self._rows = (lo, hi)
            self._envs.reset(self._buffers, lo, tasks, seeds)
        else:
            raise ValueError(f"unknown sampler worker command {command!r}")
        return REPLY_OK

    def _detach(self) -> None:
        if self._buffers is not None:
            self._buffers.release()
            self._buffers = None
        if self._shm is not None:
            self._shm.close()
            self._shm = None

    def close(self) -> None:
        self._detach()
        self._envs.close()


def error_reply(exc: BaseException) -> bytes:
    """``REPLY_ERROR`` + the pickled ``(exception, formatted traceback)``."""
    text = "".join(traceback.format_exception(exc))
    try:
        return REPLY_ERROR + pickle.dumps((exc, text))
    except Exception:  # an exception that does not pickle still reaches the driver as text
        return REPLY_ERROR + pickle.dumps((None, text))
