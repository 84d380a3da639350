"""Slice backends: a call split into task slices that workers sample whole, then joined.

Where each worker runs whole episodes for a slice of the tasks (Ray actors, and worker processes
when the policy lives on the CPU), the driver steps nothing. :class:`SliceSampler` splits the
``N`` tasks into contiguous slices, one per worker, sends each its slice and the parameters once,
and joins the workers' episodes in task order; a backend says only how a slice reaches its worker
and how the results come back (:meth:`SliceSampler._sample_slices`). Each worker
(:class:`SliceWorker`) runs the lockstep loop of
:class:`~metarobot.sampling.lockstep.LocalSampler` with its own environments and CPU copy of the
policy. Seeds and action noise are addressed by each episode's position in the whole batch, and
the CPU forward pass is single-threaded, so the slices put together equal, bit for bit, what
``LocalSampler`` returns for the whole batch with a CPU policy.
"""

from __future__ import annotations

import copy
import pickle
import time
from abc import abstractmethod
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from metarobot.agent import Adaptation
from metarobot.episodes import Episodes
from metarobot.policies import Params
from metarobot.sampling.base import Adapt, BatchedPolicy, Request, Sampler, SamplerStats
from metarobot.sampling.environments import EnvFn, EnvSpec
from metarobot.sampling.lockstep import LocalSampler
from metarobot.threads import set_cpu_threads

Arrays = dict[str, np.ndarray]
"""Numpy arrays by name: parameters, or one ``Episodes`` (its infos as ``infos/<key>``)."""

SliceResult = tuple[list[Arrays], tuple[int, float, float]]
"""What a worker returns: each round's episodes, and (env steps, policy s, env s) summed."""


def cpu_copy(policy: BatchedPolicy) -> BatchedPolicy:
    """The policy as workers hold it: a module is copied to the CPU, its original untouched."""
    if isinstance(policy, torch.nn.Module):
        return copy.deepcopy(policy).cpu()
    return policy


def task_bounds(num_tasks: int, workers: int) -> list[int]:
    """Slice ``k`` holds tasks ``bounds[k]..bounds[k+1]``; sizes differ by at most one."""
    return [index * num_tasks // workers for index in range(workers + 1)]


@dataclass(frozen=True)
class TaskSlice:
    """Tasks ``lo..hi`` of a call, sampled by worker ``worker``."""

    worker: int
    lo: int
    hi: int

    def request(self, whole: Request) -> Request:
        """The slice's part of ``whole``, addressed by its place in the whole batch.

        Parameters and the adaptation step travel separately (once per call, not per slice).
        """
        return replace(
            whole,
            tasks=whole.tasks[self.lo : self.hi],
            params={},
            first_task=whole.first_task + self.lo,
            adapt=None,
        )


class SliceSampler(Sampler):
    """Workers each sample a contiguous slice of a call's tasks whole; the slices are joined.

    Subclasses start :attr:`workers` workers, each a :class:`SliceWorker` (or a proxy of one),
    and implement :meth:`_sample_slices`.
    """

    workers: int

    def _collect(self, request: Request) -> list[Episodes]:
        started = time.perf_counter()
        bounds = task_bounds(len(request.tasks), self.workers)
        slices = [
            TaskSlice(index, bounds[index], bounds[index + 1])
            for index in range(self.workers)
            if bounds[index + 1] > bounds[index]
        ]
        results = self._sample_slices(request, params_arrays(request.params), slices)
        device = next(iter(request.params.values())).device
        episodes = [
            from_slices([arrays[k] for arrays, _ in results], device)
            for k in range(len(request.seeds))
        ]
        # The policy and env seconds are the slowest worker's, the one the call waited for.
        slowest = max((stats for _, stats in results), key=lambda stats: stats[1] + stats[2])
        self.last_stats = SamplerStats(
            env_steps=sum(stats[0] for _, stats in results),
            seconds=time.perf_counter() - started,
            policy_seconds=slowest[1],
            env_seconds=slowest[2],
        )
        return episodes

    @abstractmethod
    def _sample_slices(
        self, request: Request, params: Arrays, slices: list[TaskSlice]
    ) -> list[SliceResult]:
        """Have each slice's worker run :meth:`SliceWorker.collect`; results in slice order.

        ``params`` are the whole call's parameters as CPU arrays (a slice's are its rows), and
        ``request.adapt`` the inner-loop update between rounds, if any.
        """


def params_arrays(params: Params) -> Arrays:
    """Parameters as CPU numpy arrays, for pickling to workers."""
    return {name: p.detach().cpu().contiguous().numpy() for name, p in params.items()}


def to_arrays(episodes: Episodes) -> Arrays:
    """``episodes`` as numpy arrays, for pickling back to the driver."""
    arrays = {
        f.name: getattr(episodes, f.name).cpu().numpy()
        for f in fields(episodes)
        if f.name != "infos"
    }
    arrays.update({f"infos/{key}": value.cpu().numpy() for key, value in episodes.infos.items()})
    return arrays


def from_slices(slices: list[Arrays], device: torch.device) -> Episodes:
    """Concatenate per-slice arrays along the task axis into one ``Episodes`` on ``device``."""
    tensors = {
        key: torch.from_numpy(np.concatenate([arrays[key] for arrays in slices])).to(device)
        for key in slices[0]
    }
    infos = {
        key.removeprefix("infos/"): tensors.pop(key)
        for key in list(tensors)
        if key.startswith("infos/")
    }
    return Episodes(**tensors, infos=infos)


class _TallyingSampler(LocalSampler):
    """A ``LocalSampler`` that adds up the stats of its calls, for a multi-round ``collect``."""

    totals: tuple[int, float, float] = (0, 0.0, 0.0)
    """Env steps, policy seconds and env seconds since last reset to zeros."""

    def _collect(self, request: Request) -> list[Episodes]:
        episodes = super()._collect(request)
        stats, (steps, policy, env) = self.last_stats, self.totals
        assert stats is not None
        self.totals = (
            steps + stats.env_steps,
            policy + stats.policy_seconds,
            env + stats.env_seconds,
        )
        return episodes


class SliceWorker:
    """One worker: environments, a CPU copy of the policy and the lockstep rollout loop.

    Args:
        env_fn: Factory of one bare env.
        policy: The policy (a CPU copy); only its structure matters, parameters come per call.
    """

    def __init__(self, env_fn: EnvFn, policy: BatchedPolicy) -> None:
        # Sampling and adapting alike, as the driver of a CPU run does (see metarobot.threads).
        set_cpu_threads("cpu")
        self._sampler = _TallyingSampler(env_fn, policy)

    def spec(self) -> EnvSpec:
        """The environments' spec, also a sign that the worker has started."""
        return self._sampler.env_spec

    def hello(self) -> bytes:
        """The first answer of a worker process (see ``worker_pool.serve``): the pickled spec."""
        return pickle.dumps(self.spec())

    def handle(self, message: bytes) -> bytes:
        """Answer a pickled ``("collect", request, params, rows, adapt)`` from the driver."""
        command, *args = pickle.loads(message)
        if command != "collect":
            raise ValueError(f"unknown sampler worker command {command!r}")
        return pickle.dumps(self.collect(*args))

    def collect(
        self,
        request: Request,
        params: Arrays,
        rows: tuple[int, int],
        adapt: Adapt | None,
    ) -> SliceResult:
        """Sample this worker's slice: one round, or one per seed, adapted in between.

        Args:
            request: The slice (:meth:`TaskSlice.request`): its tasks and their offset
                ``first_task`` in the whole batch, which addresses the seeds.
            params: Parameters holding at least the slice's rows.
            rows: The slice's rows ``(lo, hi)`` of ``params``.
            adapt: The inner-loop update between rounds; ``None`` for one round.
        """
        sampler = self._sampler
        lo, hi = rows
        # Copies into torch's own (aligned) memory, as the driver's LockstepSampler makes.
        start = {name: torch.tensor(value[lo:hi]) for name, value in params.items()}
        sampler.totals = (0, 0.0, 0.0)
        rounds = sampler.sample_adaptation(
            request.tasks,
            start,
            request.episodes_per_task,
            request.seeds,
            adapt or _no_adaptation,
            request.horizon,
            request.first_task,
        )
        return [to_arrays(episodes) for episodes in rounds], sampler.totals

    def close(self) -> None:
        """Close the environments."""
        self._sampler.close()


def _no_adaptation(episodes: Episodes, previous: Adaptation[Any]) -> Adaptation[Any]:
    raise AssertionError("a one-round request never adapts")
