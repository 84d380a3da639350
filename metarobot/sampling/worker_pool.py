"""Worker processes that answer their driver's messages: the plumbing of the process backends.

Each worker serves one handler (:class:`Handler`) over its own pipe (:func:`serve`): the handler
of :class:`~metarobot.sampling.process.ProcessEnvSampler` steps environments, that of
:class:`~metarobot.sampling.process.ProcessSliceSampler` samples task slices whole.
:class:`WorkerPool` starts the workers, sends and gathers messages, and turns a dead worker or a
worker's exception into an error in the driver.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn, Protocol

from metarobot.sampling.environments import EnvSpec

# The pool's own messages; handlers define theirs (one byte where speed matters, else pickles).
CLOSE = b"x"
REPLY_OK = b"."
REPLY_ERROR = b"e"  # followed by the pickled (exception, formatted traceback)


class Handler(Protocol):
    """What a worker process runs: see :func:`serve`."""

    def hello(self) -> bytes:
        """The first answer, before any message: the pickled ``EnvSpec`` of its environments."""
        ...

    def handle(self, message: bytes) -> bytes:
        """The answer to one message."""
        ...

    def close(self) -> None:
        """Release the environments."""
        ...


class Closable(Protocol):
    """The owner of a pool (a sampler), closed when the pool's pipes fall out of step."""

    def close(self) -> None:
        """Release the pool and whatever else the owner holds."""
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


def error_reply(exc: BaseException) -> bytes:
    """``REPLY_ERROR`` + the pickled ``(exception, formatted traceback)``."""
    text = "".join(traceback.format_exception(exc))
    try:
        return REPLY_ERROR + pickle.dumps((exc, text))
    except Exception:  # an exception that does not pickle still reaches the driver as text
        return REPLY_ERROR + pickle.dumps((None, text))


def raise_if_error(answer: bytes) -> None:
    """Raise the exception that a worker answered with, if it answered one."""
    if answer[:1] == REPLY_ERROR:
        exc, text = pickle.loads(answer[1:])
        raise RuntimeError(f"a sampler worker raised an exception:\n{text}") from exc


class WorkerPool:
    """Worker processes, each serving a handler over its own pipe (:func:`serve`).

    Args:
        build: Picklable factory of each worker's handler (run in the worker).
        workers: Number of processes.
        start_method: ``multiprocessing`` start method.

    Raises:
        ValueError: On a bad worker count or start method, or a ``build`` that does not pickle.
    """

    def __init__(self, build: Callable[[], Handler], workers: int, start_method: str) -> None:
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
        self.shares: dict[int, str] = {}
        """What each worker is working on (``"tasks 0..4"``), for the message when one dies."""
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

    def spec(self) -> EnvSpec:
        """The workers' first answers: the spec of their environments, the same in each.

        Raises:
            RuntimeError: If a worker failed to build its handler, or the workers' specs differ.
        """
        specs = []
        for index in range(self.size):
            answer = self.receive(index)
            raise_if_error(answer)
            specs.append(pickle.loads(answer))
        if any(spec != specs[0] for spec in specs):
            raise RuntimeError(f"workers built environments that differ: {specs}")
        assert isinstance(specs[0], EnvSpec)
        return specs[0]

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

    def gather(self, indices: Sequence[int], owner: Closable) -> list[bytes]:
        """One answer from each worker in ``indices``; raises the first error any answered.

        Every answer is read before raising, so that the pipes stay in step. Interrupted (e.g. by
        Ctrl-C) with answers still in flight, they are out of step and the workers cannot be
        reused: ``owner`` closes.
        """
        try:
            answers = [self.receive(index) for index in indices]
        except BaseException:
            owner.close()
            raise
        for answer in answers:
            raise_if_error(answer)
        return answers

    def died(self, index: int) -> NoReturn:
        """Close the pool and raise: worker ``index`` is gone."""
        process = self._processes[index]
        process.join(timeout=1.0)
        code = process.exitcode
        share = self.shares.get(index, "idle")
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
