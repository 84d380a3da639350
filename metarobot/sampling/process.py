"""Process backends: worker processes that step environments, or that run whole episodes.

Two ways to use worker processes, one class each; both give ``LocalSampler``'s episodes bit for
bit:

- :class:`ProcessSampler` steps contiguous slices of the ``N*E`` environments in the workers and
  runs the batched forward pass in the driver, on the policy's device (a GPU, where there is
  one). Per step the driver writes the clipped actions into shared memory, sends each worker
  with an active environment one byte, and waits for a one-byte answer; observations, rewards,
  flags and numeric infos come back through the same shared memory.
- :class:`ProcessRolloutSampler` gives each worker a slice of the tasks and a CPU copy of the
  policy, and each runs whole episodes (:mod:`metarobot.sampling.slices`, as Ray actors do):
  no round trip per step, and the forward passes run in parallel instead of while every worker
  waits. With the policy on the CPU it is the faster one, and :func:`make_sampler` picks it.

Workers start once (with the ``forkserver`` method by default: a clean process that never
inherits torch's threads), keep their environments across calls, and are closed by ``close``,
the context manager, garbage collection or interpreter exit.
"""

from __future__ import annotations

import functools
import multiprocessing
import pickle
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import Any, NoReturn

from metarobot.episodes import Episodes
from metarobot.sampling._envs import (
    CLOSE,
    REPLY_ERROR,
    REPLY_KEYS,
    STEP,
    EnvFn,
    EnvSpec,
    LockstepWorker,
    StepBuffers,
    serve,
)
from metarobot.sampling.base import BatchedPolicy, LockstepSampler, Request, Sampler
from metarobot.sampling.slices import (
    RolloutWorker,
    SliceResult,
    cpu_copy,
    join_slices,
    params_arrays,
    slice_request,
    task_bounds,
)
from metarobot.tasks import Task


class _WorkerPool:
    """Worker processes, each serving a handler over its own pipe (``_envs.serve``).

    Args:
        build: Picklable factory of each worker's handler (run in the worker).
        workers: Number of processes.
        start_method: ``multiprocessing`` start method.
        unit: What the workers hold slices of (``"environments"``, ``"tasks"``), for the
            message when a worker dies.
        bounds: The slices' bounds, which the owner updates in place (for the same message).
    """

    def __init__(
        self,
        build: Callable[[], Any],
        workers: int,
        start_method: str,
        unit: str,
        bounds: list[int],
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        methods = multiprocessing.get_all_start_methods()
        if start_method not in methods:
            raise ValueError(f"start_method {start_method!r} is not one of {methods}")
        try:
            pickle.dumps(build)
        except Exception as exc:
            raise ValueError(
                f"{build!r} cannot be pickled to the worker processes ({exc}); the env_fn must "
                "be a module-level function or class, or a functools.partial of one"
            ) from exc
        context: Any = multiprocessing.get_context(start_method)
        self.size = workers
        self._unit, self._bounds = unit, bounds
        self._processes: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._conns)
        try:
            for index in range(workers):
                parent, child = context.Pipe()
                process = context.Process(
                    target=serve,
                    args=(child, build),
                    name=f"metarobot-sampler-{index}",
                    daemon=True,
                )
                process.start()
                child.close()  # so that a dead worker shows up as end of file on our end
                self._processes.append(process)
                self._conns.append(parent)
        except BaseException:
            self.close()
            raise

    def send(self, index: int, message: bytes) -> None:
        """Send worker ``index`` one message."""
        try:
            self._conns[index].send_bytes(message)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self.died(index)

    def receive(self, index: int) -> bytes:
        """The next answer of worker ``index``."""
        try:
            return self._conns[index].recv_bytes()
        except (EOFError, ConnectionResetError, OSError):
            self.died(index)

    def died(self, index: int) -> NoReturn:
        """Close the pool and raise: worker ``index`` is gone."""
        process = self._processes[index]
        process.join(timeout=1.0)
        code = process.exitcode
        bounds = self._bounds
        share = f"{self._unit} {bounds[index]}..{bounds[index + 1]}" if bounds else "idle"
        self.close()
        how = "is unreachable" if code is None else f"died with exit code {code}"
        if code is not None and code < 0:
            how += " (killed by a signal: a crash in the simulator, or the out-of-memory killer?)"
        raise RuntimeError(
            f"sampler worker {index} (pid {process.pid}, {share}) {how}; "
            "the sampler is closed, create a new one"
        )

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._finalizer()


def _shutdown(processes: list[BaseProcess], conns: list[Connection]) -> None:
    """Ask the workers to exit, then make sure they did."""
    for conn in conns:
        try:
            conn.send_bytes(CLOSE)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            pass
    for process in processes:
        process.join(timeout=2.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=1.0)
    for conn in conns:
        conn.close()
    processes.clear()
    conns.clear()


def _load_spec(answer: bytes) -> EnvSpec:
    """A worker's first answer: its env spec, or the error that kept it from building one."""
    _raise_if_error(answer)
    spec = pickle.loads(answer)
    assert isinstance(spec, EnvSpec)
    return spec


def _raise_if_error(answer: bytes) -> None:
    if answer[:1] == REPLY_ERROR:
        exc, text = pickle.loads(answer[1:])
        raise RuntimeError(f"a sampler worker raised an exception:\n{text}") from exc


def _gather(owner: Sampler, pool: _WorkerPool, indices: range | list[int]) -> list[bytes]:
    """One answer from each worker in ``indices``; raises the first error any of them answered.

    Every answer is read before raising, so that the pipes stay in step. Interrupted (e.g. by
    Ctrl-C) with answers still in flight, they are out of step and the workers cannot be
    reused: ``owner`` closes.
    """
    try:
        answers = [pool.receive(index) for index in indices]
    except BaseException:
        owner.close()
        raise
    for answer in answers:
        _raise_if_error(answer)
    return answers


def _common_spec(pool: _WorkerPool) -> EnvSpec:
    specs = [_load_spec(pool.receive(index)) for index in range(pool.size)]
    if any(spec != specs[0] for spec in specs):
        raise RuntimeError(f"workers built environments that differ: {specs}")
    return specs[0]


class ProcessSampler(LockstepSampler):
    """Worker processes step the environments; the driver runs the policy on its device.

    Gives the same episodes as ``LocalSampler`` bit for bit.

    Args:
        env_fn: Picklable factory of one bare env (a module-level function or class, or a
            ``functools.partial`` of one).
        policy: The policy; it stays in this process, only environments run in the workers.
        workers: Number of worker processes; each steps a contiguous slice of the ``N*E``
            environments of a call.
        start_method: ``multiprocessing`` start method: ``"forkserver"`` (default),
            ``"spawn"`` or ``"fork"``.

    Raises:
        ValueError: On a bad worker count or start method.
        RuntimeError: If a worker fails to start or to build its environment.
    """

    def __init__(
        self,
        env_fn: EnvFn,
        policy: BatchedPolicy,
        workers: int = 1,
        start_method: str = "forkserver",
    ) -> None:
        super().__init__(env_fn, policy)
        self._shm: list[SharedMemory] = []  # a list so that the finalizer sees replacements
        self._buffers: StepBuffers | None = None
        self._bounds: list[int] = []
        self._keys: list[list[str]] = []
        self._slots = 0
        self._finalizer = weakref.finalize(self, _release_all, self._shm)
        self._pool = _WorkerPool(
            functools.partial(LockstepWorker, env_fn),
            workers,
            start_method,
            "environments",
            self._bounds,
        )
        self.workers = workers
        self._keys = [[] for _ in range(workers)]
        try:
            self._set_spec(_common_spec(self._pool))
            self._attach(1)
        except BaseException:
            self.close()
            raise

    # -- environment hooks of the driver ----------------------------------------------------

    def _reset_envs(self, tasks: list[Task], seeds: list[int]) -> StepBuffers:
        size = len(tasks)
        if self._buffers is None or size > self._buffers.capacity:
            self._attach(size)
        assert self._buffers is not None
        self._bounds[:] = task_bounds(size, self.workers)
        self._keys = [[] for _ in range(self.workers)]
        self._slots = 0
        busy = []
        for index in range(self.workers):
            lo, hi = self._bounds[index], self._bounds[index + 1]
            if hi > lo:
                message = ("reset", lo, hi, tasks[lo:hi], seeds[lo:hi])
                self._pool.send(index, pickle.dumps(message))
                busy.append(index)
        self._gather(busy)
        return self._buffers

    def _step_envs(self) -> None:
        assert self._buffers is not None
        active = self._buffers.active
        busy = []
        for index in range(self.workers):
            lo, hi = self._bounds[index], self._bounds[index + 1]
            if hi > lo and active[lo:hi].any():
                self._pool.send(index, STEP)
                busy.append(index)
        self._gather(busy)

    def _num_info_slots(self) -> int:
        return self._slots

    def _info_slices(self) -> list[tuple[int, int, list[str]]]:
        return [
            (self._bounds[index], self._bounds[index + 1], list(self._keys[index]))
            for index in range(self.workers)
        ]

    # -- worker plumbing ----------------------------------------------------------------------

    def _attach(self, capacity: int) -> None:
        """Give every worker a fresh shared buffer for ``capacity`` environments."""
        spec = self.env_spec
        _, nbytes = StepBuffers.layout(capacity, spec.obs_dim, spec.act_dim)
        shm = SharedMemory(create=True, size=nbytes)
        self._shm.append(shm)
        message = pickle.dumps(("attach", shm.name, capacity, spec.obs_dim, spec.act_dim))
        for index in range(self.workers):
            self._pool.send(index, message)
        self._gather(range(self.workers))
        if self._buffers is not None:
            self._buffers.release()
        self._buffers = StepBuffers(shm.buf, capacity, spec.obs_dim, spec.act_dim)
        while len(self._shm) > 1:
            _release(self._shm.pop(0))

    def _gather(self, indices: range | list[int]) -> None:
        """Collect one answer from each worker in ``indices``; learn the new info keys."""
        for index, answer in zip(indices, _gather(self, self._pool, indices), strict=True):
            if answer[:1] == REPLY_KEYS:
                self._keys[index].extend(pickle.loads(answer[1:]))
                self._slots = max(self._slots, len(self._keys[index]))

    def close(self) -> None:
        """Stop the workers and free the shared memory (idempotent)."""
        if self._buffers is not None:
            self._buffers.release()
            self._buffers = None
        if hasattr(self, "_pool"):
            self._pool.close()
        self._finalizer()
        super().close()


class ProcessRolloutSampler(Sampler):
    """Worker processes each run whole episodes for a slice of the tasks, policy included.

    Gives the same episodes as ``LocalSampler`` with a CPU policy, bit for bit. Parameters on a
    GPU are copied to the CPU once per call, and the episodes come back to their device.

    Args:
        env_fn: Picklable factory of one bare env.
        policy: The policy; each worker gets a CPU copy of it (parameters come per call).
        workers: Number of worker processes; each samples a contiguous slice of the ``N``
            tasks of a call.
        start_method: ``multiprocessing`` start method.

    Raises:
        ValueError: On a bad worker count or start method.
        RuntimeError: If a worker fails to start or to build its environment.
    """

    def __init__(
        self,
        env_fn: EnvFn,
        policy: BatchedPolicy,
        workers: int = 1,
        start_method: str = "forkserver",
    ) -> None:
        super().__init__(env_fn, policy)
        self._bounds: list[int] = []
        self._pool = _WorkerPool(
            functools.partial(RolloutWorker, env_fn, cpu_copy(policy)),
            workers,
            start_method,
            "tasks",
            self._bounds,
        )
        self.workers = workers
        try:
            self._set_spec(_common_spec(self._pool))
        except BaseException:
            self.close()
            raise

    def _collect(self, request: Request) -> list[Episodes]:
        started = time.perf_counter()
        params = params_arrays(request.params)
        self._bounds[:] = bounds = task_bounds(len(request.tasks), self.workers)
        busy = [index for index in range(self.workers) if bounds[index + 1] > bounds[index]]
        for index in busy:
            lo, hi = bounds[index], bounds[index + 1]
            rows = {name: value[lo:hi] for name, value in params.items()}
            message = ("collect", slice_request(request, lo, hi), rows, (0, hi - lo), None)
            self._pool.send(index, pickle.dumps(message))
        results: list[SliceResult] = [pickle.loads(a) for a in _gather(self, self._pool, busy)]
        device = next(iter(request.params.values())).device
        episodes, self.last_stats = join_slices(results, len(request.seeds), device, started)
        return episodes

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if hasattr(self, "_pool"):
            self._pool.close()
        super().close()


def _release(shm: SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:
        pass  # views still exist; the mapping goes when they do
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


def _release_all(shms: list[SharedMemory]) -> None:
    for shm in shms:
        _release(shm)
    shms.clear()
