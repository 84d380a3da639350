"""The sampler interface: what every backend is asked, the checks they share, and the seeds.

:class:`Sampler` is the interface; backends implement :meth:`Sampler._collect` for a checked
:class:`Request`. Two kinds exist: lockstep backends (:mod:`metarobot.sampling.lockstep`) step
every environment of a call from this process with one batched forward pass per step, and slice
backends (:mod:`metarobot.sampling.slices`) hand each worker a slice of the tasks to sample
whole, with that same lockstep loop.

Every random draw is addressed by the episode's position ``(task, episode)`` in the call,
never by the order of draws (:func:`episode_seeds`, :func:`action_noise`): an episode depends
only on the seed, its position, its task and its parameters. This is what lets a backend split
a call into pieces (worker processes, Ray actors) and re-run a lost piece alone, and still
return what one process would have.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch.distributions import Normal

from metarobot.agent import Adaptation
from metarobot.episodes import Episodes
from metarobot.policies import Params
from metarobot.sampling.environments import EnvFn, EnvSpec
from metarobot.tasks import Task

# Seed streams under one user seed (numpy SeedSequence spawn keys).
_ENV_STREAM = 0
_ACTION_STREAM = 1


class BatchedPolicy(Protocol):
    """What a sampler needs from a policy (``GaussianMLPPolicy`` is one)."""

    def batched_distribution(self, obs: torch.Tensor, params: Params) -> Normal:
        """Per-task action distributions for ``obs[N, ..., obs_dim]`` and ``params[N, ...]``."""
        ...


@dataclass(frozen=True)
class SamplerStats:
    """Timings of the last ``sample`` call, for ``time/...`` metrics and benchmarks.

    Attributes:
        env_steps: Real (unpadded) environment steps taken.
        seconds: Wall time of the whole call.
        policy_seconds: Time in the batched forward pass and action sampling.
        env_seconds: Time waiting for the environments to reset and step.
    """

    env_steps: int
    seconds: float
    policy_seconds: float
    env_seconds: float

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second of wall time."""
        return self.env_steps / self.seconds if self.seconds > 0 else 0.0


Adapt = Callable[[Episodes, Adaptation[Any]], Adaptation[Any]]
"""An inner-loop update: episodes sampled with an adaptation's parameters -> the next one."""


class NonFiniteParametersError(ValueError):
    """Policy parameters given to a sampler hold NaN or infinity (e.g. a diverged inner step).

    Sampling with them would only send NaN actions to the environments; the training loop
    catches this error to skip the iteration and keep its last good parameters.
    """


@dataclass(frozen=True)
class Request:
    """A checked call, as every backend's :meth:`Sampler._collect` receives it.

    Attributes:
        tasks: The ``N`` tasks.
        params: Per-task parameters of the first round, each with a leading axis ``N``.
        episodes_per_task: ``E``, in every round.
        seeds: One seed per round (one round for :meth:`Sampler.sample`).
        horizon: Episode length cap ``T``.
        first_task: Position of ``tasks[0]`` in the whole batch (see :meth:`Sampler.sample`).
        adapt: The inner-loop update between rounds; ``None`` for one round.
    """

    tasks: list[Task]
    params: Params
    episodes_per_task: int
    seeds: tuple[int, ...]
    horizon: int
    first_task: int = 0
    adapt: Adapt | None = None


def episode_seeds(
    seed: int, num_tasks: int, episodes_per_task: int, first_task: int = 0
) -> np.ndarray:
    """The ``env.reset`` seed of every episode, ``[N, E]`` uint64.

    Each comes from ``numpy.random.SeedSequence(seed, spawn_key=(0, task, episode))`` with
    ``task`` counted from ``first_task``, so an episode's start depends only on the seed and its
    position, never on the backend, the number of workers or the other episodes of the call.
    """
    _check_seed(seed)
    seeds = np.empty((num_tasks, episodes_per_task), dtype=np.uint64)
    for n in range(num_tasks):
        for e in range(episodes_per_task):
            sequence = np.random.SeedSequence(seed, spawn_key=(_ENV_STREAM, first_task + n, e))
            seeds[n, e] = sequence.generate_state(1, np.uint64)[0]
    return seeds


def action_noise(
    seed: int,
    num_tasks: int,
    episodes_per_task: int,
    horizon: int,
    act_dim: int,
    first_task: int = 0,
) -> np.ndarray:
    """Standard normal action noise of every episode and step, ``[N, E, T, act_dim]`` float64.

    Episode ``(task, episode)`` draws its ``[T, act_dim]`` block from its own generator, seeded
    with ``SeedSequence(seed, spawn_key=(1, task, episode))`` (``task`` counted from
    ``first_task``). Drawn per episode rather than per step for the whole batch, the noise of an
    episode is the same whichever process samples it and whatever else that process samples.
    It is drawn on the CPU, in float64, so that it does not depend on the policy's device either.
    """
    _check_seed(seed)
    noise = np.empty((num_tasks, episodes_per_task, horizon, act_dim), dtype=np.float64)
    for n in range(num_tasks):
        for e in range(episodes_per_task):
            sequence = np.random.SeedSequence(seed, spawn_key=(_ACTION_STREAM, first_task + n, e))
            np.random.default_rng(sequence).standard_normal(out=noise[n, e])
    return noise


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


class Sampler(ABC):
    """Collects ``E`` episodes for each of ``N`` tasks, task ``i`` with its own parameters.

    This is the interface every backend implements (:meth:`_collect`) and the checks they share.
    The same seed gives the same episodes on every backend; see the module docstring for why.
    Use a sampler as a context manager, or call :meth:`close`, to release its environments and
    workers.

    Args:
        env_fn: Picklable factory of one bare env (``set_task``, ``horizon``, ``info_keys``,
            1-D Box spaces; see :func:`~metarobot.sampling.environments.describe_env`),
            e.g. ``functools.partial(envs.make, "HalfCheetahVel")``.
        policy: The policy; its parameters come with each call, batched over tasks.
    """

    env_spec: EnvSpec
    last_stats: SamplerStats | None = None

    def __init__(self, env_fn: EnvFn, policy: BatchedPolicy) -> None:
        self.env_fn = env_fn
        self.policy = policy
        self._closed = False

    def _set_spec(self, spec: EnvSpec) -> None:
        for attr, size in (("obs_dim", spec.obs_dim), ("act_dim", spec.act_dim)):
            expected = getattr(self.policy, attr, None)
            if expected is not None and expected != size:
                raise ValueError(
                    f"policy {attr}={expected} does not match the environment's {attr}={size}"
                )
        self.env_spec = spec

    def sample(
        self,
        tasks: Sequence[Task],
        params: Params,
        episodes_per_task: int,
        seed: int,
        horizon: int | None = None,
        first_task: int = 0,
    ) -> Episodes:
        """Roll out ``episodes_per_task`` episodes of every task, task ``i`` with ``params[i]``.

        Args:
            tasks: The ``N`` tasks.
            params: Policy parameters, each tensor with a leading task axis ``N``, on the
                policy's device (``expand_params`` broadcasts one set to all tasks).
            episodes_per_task: ``E``.
            seed: Drives the env resets (see :func:`episode_seeds`) and the action noise (see
                :func:`action_noise`); the same seed gives the same episodes. An episode depends
                only on the seed, its ``(task, episode)`` position, its task and parameters.
            horizon: Episode length cap ``T``; the env's ``horizon`` when ``None``.
            first_task: Position of ``tasks[0]`` in a larger batch that this call is a slice
                of: the slices of a batch, sampled with their offsets, together equal the batch.

        Returns:
            ``Episodes`` of shape ``[N, E, T]`` on the parameters' device; steps after an
            episode ended are zero padding with mask 0.

        Raises:
            ValueError: On an empty task list, mismatched parameters, or a bad count or seed.
            NonFiniteParametersError: If a parameter holds NaN or infinity.
            RuntimeError: If the sampler is closed, or a worker failed.
        """
        request = self._request(tasks, params, episodes_per_task, [seed], horizon, first_task)
        return self._collect(request)[0]

    def sample_adaptation(
        self,
        tasks: Sequence[Task],
        params: Params,
        episodes_per_task: int,
        seeds: Sequence[int],
        adapt: Adapt,
        horizon: int | None = None,
        first_task: int = 0,
        on_workers: bool = False,
    ) -> list[Episodes]:
        """Sample, adapt, sample again: one ``Episodes`` per seed, adapted in between.

        Round ``k`` is sampled with ``seeds[k]`` and the parameters after ``k`` calls of
        ``adapt``, which receives the episodes of the round before and the adaptation they were
        sampled with: ``Adaptation(params, None)`` first, then what ``adapt`` returned, whose
        state thus stays where adaptation runs. This is the data of one meta-training
        iteration: the adaptation rounds, then the validation round (the last).

        Args:
            tasks: The ``N`` tasks.
            params: Per-task parameters of the first round.
            episodes_per_task: ``E``, in every round.
            seeds: One seed per round.
            adapt: The inner-loop update.
            horizon: As in :meth:`sample`.
            first_task: As in :meth:`sample`.
            on_workers: Adapt where the episodes are sampled (the Ray backend's actors, on
                their CPUs) instead of in this process; ``adapt`` must then be picklable.

        Raises:
            ValueError: If ``on_workers`` is set on a backend without workers that can adapt.
        """
        if not on_workers:
            rounds: list[Episodes] = []
            adaptation: Adaptation[Any] = Adaptation(params, None)
            for seed in seeds:
                if rounds:
                    adaptation = adapt(rounds[-1], adaptation)
                rounds.append(
                    self.sample(
                        tasks, adaptation.params, episodes_per_task, seed, horizon, first_task
                    )
                )
            return rounds
        if not self.adapts_on_workers:
            raise ValueError(
                f"{type(self).__name__} adapts in this process only; adaptation on the "
                "workers needs the 'ray' backend"
            )
        request = self._request(tasks, params, episodes_per_task, seeds, horizon, first_task)
        return self._collect(replace(request, adapt=adapt))

    adapts_on_workers: ClassVar[bool] = False
    """Whether :meth:`_collect` can run several rounds, adapting in between, on its workers."""

    @abstractmethod
    def _collect(self, request: Request) -> list[Episodes]:
        """One ``Episodes`` per seed of a checked request; also sets :attr:`last_stats`."""

    def _request(
        self,
        tasks: Sequence[Task],
        params: Params,
        episodes_per_task: int,
        seeds: Sequence[int],
        horizon: int | None,
        first_task: int,
    ) -> Request:
        """Check a call's arguments and resolve its horizon."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        tasks = list(tasks)
        self._check_call(tasks, params, episodes_per_task, horizon, first_task)
        for seed in seeds:
            _check_seed(seed)
        horizon = self.env_spec.horizon if horizon is None else horizon
        return Request(tasks, params, episodes_per_task, tuple(seeds), horizon, first_task)

    def _check_call(
        self,
        tasks: list[Task],
        params: Params,
        episodes_per_task: int,
        horizon: int | None,
        first_task: int,
    ) -> None:
        if not tasks:
            raise ValueError("tasks is empty; give at least one task")
        for task in tasks:
            if not isinstance(task, Task):
                raise ValueError(f"tasks must be metarobot Task records, got {task!r}")
        for name, value, least in (
            ("episodes_per_task", episodes_per_task, 1),
            ("horizon", horizon, 1),
            ("first_task", first_task, 0),
        ):
            if value is None and name == "horizon":
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                kind = "positive" if least else "non-negative"
                raise ValueError(f"{name} must be a {kind} int, got {value!r}")
        if not params:
            raise ValueError("params is empty; pass the policy parameters batched over tasks")
        first = next(iter(params.values()))
        for name, tensor in params.items():
            if tensor.ndim == 0 or tensor.shape[0] != len(tasks):
                raise ValueError(
                    f"params[{name!r}] has shape {tuple(tensor.shape)}; every parameter needs a "
                    f"leading task axis of size N={len(tasks)} (see policies.expand_params)"
                )
            if tensor.device != first.device:
                raise ValueError(
                    f"params[{name!r}] is on {tensor.device} but others are on {first.device}"
                )
        module_params = getattr(self.policy, "parameters", None)
        if callable(module_params):
            own = next(iter(module_params()), None)
            if own is not None and own.device != first.device:
                raise ValueError(
                    f"params are on {first.device} but the policy is on {own.device}; "
                    "move them to the policy's device"
                )
        for name, tensor in params.items():
            finite = torch.isfinite(tensor).flatten(1).all(dim=1)
            if not bool(finite.all()):
                bad = (~finite).nonzero().flatten().add(first_task).tolist()
                raise NonFiniteParametersError(
                    f"params[{name!r}] holds NaN or infinity for tasks {bad}"
                )

    def close(self) -> None:
        """Release the environments (and workers); the sampler cannot sample afterwards."""
        self._closed = True

    def __enter__(self) -> Sampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
