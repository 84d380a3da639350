"""Ray backend: the tasks of a call spread over Ray actors that each sample a slice whole.

Across machines, one round trip per environment step would cost more than the step, so the
driver here does not step anything: it is a slice backend (:mod:`metarobot.sampling.slices`,
shared with the process backend's :class:`~metarobot.sampling.process.ProcessSliceSampler`).
Each actor is a :class:`~metarobot.sampling.slices.SliceWorker` with its own environments and a
CPU copy of the policy; the parameters go into Ray's object store once per call, and the
episodes come back as numpy arrays. The slices put together equal, bit for bit, what
``LocalSampler`` returns for the whole batch with a CPU policy (on machines with the same CPU
kernels: a cluster mixing CPU generations may differ in the last bits).

Adaptation runs where the caller says (:meth:`RaySampler.sample_adaptation`): on the driver
(the default; the policy's device there may be a GPU), shipping adapted parameters out once per
round, or on the actors, whose CPUs then sample, adapt and sample again without a round trip in
between, one call per meta-training iteration.

An actor that dies (its process killed, its node lost) is replaced by a fresh one and its slice
sampled again with the same seeds, so the call returns exactly what it would have returned
without the fault.
"""

from __future__ import annotations

import warnings
from typing import Any

from metarobot.sampling.base import BatchedPolicy, NonFiniteParametersError, Request
from metarobot.sampling.environments import EnvFn, EnvSpec
from metarobot.sampling.slices import (
    Arrays,
    SliceResult,
    SliceSampler,
    SliceWorker,
    TaskSlice,
    cpu_copy,
)

INSTALL_HINT = 'the ray backend needs Ray: pip install "metarobot[ray]"'


class RaySamplerWarning(RuntimeWarning):
    """An actor of the Ray backend died and was replaced (the results are unaffected)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ValueError(INSTALL_HINT) from error
    return ray


class RaySampler(SliceSampler):
    """Ray-actor backend; gives the same episodes as ``LocalSampler`` with a CPU policy.

    Connects to Ray if this process has not already (``ray.init(address=address)``; with
    ``address=None`` Ray reads ``RAY_ADDRESS``, then looks for a cluster started on this
    machine by ``ray start``, and otherwise starts a local one, which :meth:`close` shuts down
    again), then starts ``workers`` actors of one CPU each.

    Args:
        env_fn: Picklable factory of one bare env; every node must be able to import it.
        policy: The policy; each actor gets a CPU copy of it.
        workers: Actors; each samples a contiguous slice of the tasks of a call.
        address: Ray cluster address (``"host:port"``, ``"auto"``, ``"local"``) or ``None``.
        max_restarts: Actors that may die and be replaced within one call before it fails.
        start_timeout: Seconds to wait for the actors to start (e.g. for free CPUs).

    Raises:
        ValueError: On a bad worker count, or if Ray is not installed.
        RuntimeError: If the actors do not start in time or build different environments.
    """

    adapts_on_workers = True

    def __init__(
        self,
        env_fn: EnvFn,
        policy: BatchedPolicy,
        workers: int = 1,
        address: str | None = None,
        max_restarts: int = 3,
        start_timeout: float = 300.0,
    ) -> None:
        super().__init__(env_fn, policy)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        ray = self._ray = _import_ray()
        self.workers = workers
        self.max_restarts = max_restarts
        self.restarts = 0
        """Actors replaced so far (each after dying during a call)."""
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False)
        self._cpu_policy = cpu_copy(policy)  # actors run on CPUs
        self._actor_class = ray.remote(num_cpus=1)(SliceWorker)
        self._actors: list[Any] = []
        try:
            self._actors = [self._start_actor() for _ in range(workers)]
            specs = self._gather_specs(start_timeout)
            if any(spec != specs[0] for spec in specs):
                raise RuntimeError(f"Ray actors built environments that differ: {specs}")
            self._set_spec(specs[0])
        except BaseException:
            self.close()
            raise

    def _start_actor(self) -> Any:
        return self._actor_class.remote(self.env_fn, self._cpu_policy)

    def _gather_specs(self, timeout: float) -> list[EnvSpec]:
        ray = self._ray
        refs = [actor.spec.remote() for actor in self._actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            cpus = ray.cluster_resources().get("CPU", 0)
            raise RuntimeError(
                f"{len(refs) - len(ready)} of {len(refs)} Ray actors did not start within "
                f"{timeout:g} s; each needs one CPU and the cluster has {cpus:g}: ask for "
                "fewer workers or add nodes"
            )
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayError as error:  # its __init__ raised: the env or the policy
            raise RuntimeError(f"a Ray sampler actor failed to start:\n{error}") from None

    def _sample_slices(
        self, request: Request, params: Arrays, slices: list[TaskSlice]
    ) -> list[SliceResult]:
        """Run ``collect`` on every slice's actor, replacing dead actors.

        With ``request.adapt`` (``sample_adaptation(on_workers=True)``), each actor samples,
        adapts and samples again for its slice with the parameters sent once, on its CPU, and
        the agent's per-task state passes from one step to the next there; ``adapt`` goes to
        the actors pickled, once per call, through the object store.
        """
        ray = self._ray
        params_ref = ray.put(params)
        adapt_ref = None if request.adapt is None else ray.put(request.adapt)

        def submit(piece: TaskSlice) -> Any:
            actor = self._actors[piece.worker]
            rows = (piece.lo, piece.hi)
            return actor.collect.remote(piece.request(request), params_ref, rows, adapt_ref)

        pending = {submit(piece): piece for piece in slices}
        results: dict[TaskSlice, SliceResult] = {}
        failure: BaseException | None = None
        restarts = 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            piece = pending.pop(ref)
            try:
                results[piece] = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
                restarts += 1
                if restarts > self.max_restarts:
                    self.close()
                    raise RuntimeError(
                        f"Ray sampler actors died {restarts} times in one call (more than "
                        f"max_restarts={self.max_restarts}); last: {error}. The sampler is "
                        "closed, create a new one"
                    ) from error
                self._replace(piece, error)
                pending[submit(piece)] = piece
            except ray.exceptions.RayTaskError as error:
                # Raised once every actor has answered, so that none is left mid-call.
                failure = failure or error
        if isinstance(failure, ray.exceptions.RayTaskError):
            if isinstance(failure.cause, NonFiniteParametersError):
                raise failure.cause from None
            raise RuntimeError(f"a Ray sampler actor raised an exception:\n{failure}") from (
                failure.cause
            )
        return [results[piece] for piece in slices]

    def _replace(self, piece: TaskSlice, error: BaseException) -> None:
        """Start a fresh actor in place of the one of ``piece``, which died."""
        index = piece.worker
        self.restarts += 1
        warnings.warn(
            f"Ray sampler actor {index} died ({type(error).__name__}); replaced it and sampling "
            f"its tasks {piece.lo}..{piece.hi} again with the same seeds",
            RaySamplerWarning,
            stacklevel=3,
        )
        try:
            self._ray.kill(self._actors[index], no_restart=True)
        except Exception:  # already gone with its node: nothing left to stop
            pass
        self._actors[index] = self._start_actor()

    def close(self) -> None:
        """Stop the actors, and Ray itself if this sampler started it (idempotent)."""
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # already dead, or Ray is gone (interpreter exit)
                pass
        self._actors = []
        if getattr(self, "_owns_ray", False) and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False
        super().close()
