"""Process backends: worker processes that step environments, or that sample task slices whole.

Two ways to use worker processes, one class each; both give ``LocalSampler``'s episodes bit for
bit:

- :class:`ProcessEnvSampler`: the workers hold the environments (each a contiguous share of the
  ``N*E``) and the driver steps them in lockstep, running the batched forward pass on the
  policy's device (a GPU, where there is one). Per step the driver writes the clipped actions
  into shared memory, sends each worker with an active environment one byte, and waits for a
  one-byte answer; observations, rewards, flags and infos come back through the same shared
  memory.
- :class:`ProcessSliceSampler`: each worker gets a slice of the tasks and a CPU copy of the
  policy, and samples it whole (:mod:`metarobot.sampling.slices`, as Ray actors do): no round
  trip per step, and the forward passes run in parallel instead of while every worker waits.
  With the policy on the CPU it is the faster one, and :func:`make_sampler` picks it.

Workers (:mod:`metarobot.sampling.worker_pool`) start once (with the ``forkserver`` method by
default: a clean process that never inherits torch's threads), keep their environments across
calls, and are closed by ``close``, the context manager, garbage collection or interpreter exit.
"""

from __future__ import annotations

import functools
import pickle
import weakref
from multiprocessing.shared_memory import SharedMemory

from metarobot.sampling.base import BatchedPolicy, Request
from metarobot.sampling.environments import EnvFn, EnvStepper, StepBuffers
from metarobot.sampling.lockstep import LockstepSampler
from metarobot.sampling.slices import (
    Arrays,
    SliceResult,
    SliceSampler,
    SliceWorker,
    TaskSlice,
    cpu_copy,
    task_bounds,
)
from metarobot.sampling.worker_pool import REPLY_OK, WorkerPool
from metarobot.tasks import Task

STEP = b"s"
"""The one-byte message that steps an :class:`EnvWorker`'s active environments."""


class EnvWorker:
    """The handler of a worker process that holds environments and steps them for the driver.

    ``STEP`` steps the worker's share of the environments; a pickled ``("attach", shm_name,
    capacity)`` maps the driver's shared buffers, and ``("reset", lo, hi, tasks, seeds)`` resets
    the share into rows ``lo..hi``. Every message is answered ``REPLY_OK``.
    """

    def __init__(self, env_fn: EnvFn) -> None:
        self._envs = EnvStepper(env_fn)
        self._shm: SharedMemory | None = None
        self._buffers: StepBuffers | None = None
        self._rows = (0, 0)

    def hello(self) -> bytes:
        """The first answer: the pickled spec of the environments."""
        return pickle.dumps(self._envs.spec)

    def handle(self, message: bytes) -> bytes:
        """Answer one message of the driver (see the class docstring)."""
        if message == STEP:
            assert self._buffers is not None
            self._envs.step(self._buffers, *self._rows)
            return REPLY_OK
        command, *args = pickle.loads(message)
        if command == "attach":
            name, capacity = args
            self._detach()
            self._shm = SharedMemory(name=name)
            self._buffers = StepBuffers(self._shm.buf, capacity, self._envs.spec)
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
        """Unmap the shared buffers and close the environments."""
        self._detach()
        self._envs.close()


class ProcessEnvSampler(LockstepSampler):
    """Worker processes hold the environments; the driver steps them with the policy here.

    Gives the same episodes as ``LocalSampler`` bit for bit.

    Args:
        env_fn: Picklable factory of one bare env (a module-level function or class, or a
            ``functools.partial`` of one).
        policy: The policy; it stays in this process, only environments run in the workers.
        workers: Number of worker processes; each holds a contiguous share of the ``N*E``
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
        self._finalizer = weakref.finalize(self, _release_all, self._shm)
        self._pool = WorkerPool(functools.partial(EnvWorker, env_fn), workers, start_method)
        self.workers = workers
        try:
            self._set_spec(self._pool.spec())
            self._attach(1)
        except BaseException:
            self.close()
            raise

    def _reset_envs(self, tasks: list[Task], seeds: list[int]) -> StepBuffers:
        size = len(tasks)
        if self._buffers is None or size > self._buffers.capacity:
            self._attach(size)
        assert self._buffers is not None
        self._bounds = bounds = task_bounds(size, self.workers)
        self._pool.shares = {
            index: f"environments {bounds[index]}..{bounds[index + 1]}"
            for index in range(self.workers)
        }
        busy = []
        for index in range(self.workers):
            lo, hi = bounds[index], bounds[index + 1]
            if hi > lo:
                message = ("reset", lo, hi, tasks[lo:hi], seeds[lo:hi])
                self._pool.send(index, pickle.dumps(message))
                busy.append(index)
        self._pool.gather(busy, self)
        return self._buffers

    def _step_envs(self) -> None:
        assert self._buffers is not None
        active, bounds = self._buffers.active, self._bounds
        busy = []
        for index in range(self.workers):
            lo, hi = bounds[index], bounds[index + 1]
            if hi > lo and active[lo:hi].any():
                self._pool.send(index, STEP)
                busy.append(index)
        self._pool.gather(busy, self)

    def _attach(self, capacity: int) -> None:
        """Give every worker a fresh shared buffer for ``capacity`` environments."""
        _, nbytes = StepBuffers.layout(capacity, self.env_spec)
        shm = SharedMemory(create=True, size=nbytes)
        self._shm.append(shm)
        message = pickle.dumps(("attach", shm.name, capacity))
        for index in range(self.workers):
            self._pool.send(index, message)
        self._pool.gather(range(self.workers), self)
        if self._buffers is not None:
            self._buffers.release()
        self._buffers = StepBuffers(shm.buf, capacity, self.env_spec)
        while len(self._shm) > 1:
            _release(self._shm.pop(0))

    def close(self) -> None:
        """Stop the workers and free the shared memory (idempotent)."""
        if self._buffers is not None:
            self._buffers.release()
            self._buffers = None
        if hasattr(self, "_pool"):
            self._pool.close()
        self._finalizer()
        super().close()


class ProcessSliceSampler(SliceSampler):
    """Worker processes each sample a slice of the tasks whole, policy included.

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
        build = functools.partial(SliceWorker, env_fn, cpu_copy(policy))
        self._pool = WorkerPool(build, workers, start_method)
        self.workers = workers
        try:
            self._set_spec(self._pool.spec())
        except BaseException:
            self.close()
            raise

    def _sample_slices(
        self, request: Request, params: Arrays, slices: list[TaskSlice]
    ) -> list[SliceResult]:
        """Send each worker its slice's rows of the parameters, then wait for all of them."""
        self._pool.shares = {piece.worker: f"tasks {piece.lo}..{piece.hi}" for piece in slices}
        for piece in slices:
            rows = {name: value[piece.lo : piece.hi] for name, value in params.items()}
            size = piece.hi - piece.lo
            message = ("collect", piece.request(request), rows, (0, size), request.adapt)
            self._pool.send(piece.worker, pickle.dumps(message))
        answers = self._pool.gather([piece.worker for piece in slices], self)
        return [pickle.loads(answer) for answer in answers]

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
