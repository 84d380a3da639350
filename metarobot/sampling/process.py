"""Process backend: worker processes step contiguous slices of the environments.

Per step the driver writes the clipped actions into shared memory, sends each worker with an
active environment one byte, and waits for a one-byte answer; observations, rewards, flags and
numeric infos come back through the same shared memory. Workers start once (with the
``forkserver`` method by default: a clean process that never inherits torch's threads), keep
their environments across calls, and are closed by :meth:`ProcessSampler.close`, the context
manager, garbage collection or interpreter exit.
"""

from __future__ import annotations

import multiprocessing
import pickle
import weakref
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import Any, NoReturn

from metarobot.sampling._envs import (
    REPLY_ERROR,
    REPLY_KEYS,
    REPLY_OK,
    STEP,
    EnvFn,
    EnvSpec,
    StepBuffers,
    worker_main,
)
from metarobot.sampling.base import BatchedPolicy, LockstepSampler
from metarobot.tasks import Task


class ProcessSampler(LockstepSampler):
    """Worker-process backend; gives the same episodes as ``LocalSampler`` bit for bit.

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
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        methods = multiprocessing.get_all_start_methods()
        if start_method not in methods:
            raise ValueError(f"start_method {start_method!r} is not one of {methods}")
        try:
            pickle.dumps(env_fn)
        except Exception as exc:
            raise ValueError(
                f"env_fn {env_fn!r} cannot be pickled to the worker processes ({exc}); use a "
                "module-level function or class, or a functools.partial of one"
            ) from exc
        context: Any = multiprocessing.get_context(start_method)
        self.workers = workers
        self._processes: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self._shm: list[SharedMemory] = []  # a list so that the finalizer sees replacements
        self._buffers: StepBuffers | None = None
        self._bounds = [0] * (workers + 1)
        self._keys: list[list[str]] = [[] for _ in range(workers)]
        self._slots = 0
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._conns, self._shm)
        try:
            for index in range(workers):
                parent, child = context.Pipe()
                process = context.Process(
                    target=worker_main,
                    args=(child, env_fn),
                    name=f"metarobot-sampler-{index}",
                    daemon=True,
                )
                process.start()
                child.close()  # so that a dead worker shows up as end of file on our end
                self._processes.append(process)
                self._conns.append(parent)
            specs = [self._load(self._receive(index)) for index in range(workers)]
            if any(spec != specs[0] for spec in specs):
                raise RuntimeError(f"workers built environments that differ: {specs}")
            self._set_spec(specs[0])
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
        self._bounds = [index * size // self.workers for index in range(self.workers + 1)]
        self._keys = [[] for _ in range(self.workers)]
        self._slots = 0
        busy = []
        for index in range(self.workers):
            lo, hi = self._bounds[index], self._bounds[index + 1]
            if hi > lo:
                message = ("reset", lo, hi, tasks[lo:hi], seeds[lo:hi])
                self._send(index, pickle.dumps(message))
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
                self._send(index, STEP)
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
            self._send(index, message)
        self._gather(range(self.workers))
        if self._buffers is not None:
            self._buffers.release()
        self._buffers = StepBuffers(shm.buf, capacity, spec.obs_dim, spec.act_dim)
        while len(self._shm) > 1:
            _release(self._shm.pop(0))

    def _send(self, index: int, message: bytes) -> None:
        try:
            self._conns[index].send_bytes(message)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self._died(index)

    def _receive(self, index: int) -> bytes:
        try:
            return self._conns[index].recv_bytes()
        except (EOFError, ConnectionResetError, OSError):
            self._died(index)

    def _gather(self, indices: range | list[int]) -> None:
        """Collect one answer from each worker in ``indices``; raise the first failure."""
        failure: BaseException | None = None
        for index in indices:
            try:
                answer = self._receive(index)
            except BaseException:
                # Interrupted (e.g. Ctrl-C) with answers still in flight: the pipes are out of
                # step, so the workers cannot be reused.
                self.close()
                raise
            if answer == REPLY_OK:
                continue
            if answer[:1] == REPLY_KEYS:
                self._keys[index].extend(pickle.loads(answer[1:]))
                self._slots = max(self._slots, len(self._keys[index]))
            elif failure is None:
                try:
                    self._load(answer)
                except RuntimeError as exc:
                    failure = exc
        if failure is not None:
            raise failure

    def _load(self, answer: bytes) -> EnvSpec:
        if answer[:1] == REPLY_ERROR:
            exc, text = pickle.loads(answer[1:])
            raise RuntimeError(f"a sampler worker raised an exception:\n{text}") from exc
        spec = pickle.loads(answer)
        assert isinstance(spec, EnvSpec)
        return spec

    def _died(self, index: int) -> NoReturn:
        process = self._processes[index]
        process.join(timeout=1.0)
        code = process.exitcode
        lo, hi = self._bounds[index], self._bounds[index + 1]
        self.close()
        how = "is unreachable" if code is None else f"died with exit code {code}"
        if code is not None and code < 0:
            how += " (killed by a signal: a crash in the simulator, or the out-of-memory killer?)"
        raise RuntimeError(
            f"sampler worker {index} (pid {process.pid}, environments {lo}..{hi}) {how}; "
            "the sampler is closed, create a new one"
        )

    def close(self) -> None:
        """Stop the workers and free the shared memory (idempotent)."""
        if self._buffers is not None:
            self._buffers.release()
            self._buffers = None
        self._finalizer()
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


def _shutdown(
    processes: list[BaseProcess], conns: list[Connection], shms: list[SharedMemory]
) -> None:
    """Ask the workers to exit, then make sure they did; free shared memory."""
    for conn in conns:
        try:
            conn.send_bytes(pickle.dumps(("close",)))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            pass
    for process in processes:
        process.join(timeout=2.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=1.0)
    for conn in conns:
        conn.close()
    for shm in shms:
        _release(shm)
    processes.clear()
    conns.clear()
    shms.clear()
