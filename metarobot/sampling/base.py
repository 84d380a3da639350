"""The sampler interface, the lockstep rollout loop, and the in-process backend.

A lockstep backend only owns environments: it resets them and steps the active ones into
:class:`~metarobot.sampling._envs.StepBuffers`. Everything else (the batched forward pass,
action noise, clipping, masks, bookkeeping) happens in :class:`LockstepSampler`, in one
process, identically for every backend; the backends therefore produce the same ``Episodes``
bit for bit. The Ray backend runs that same loop on its actors, one slice of the tasks each.

Every random draw is addressed by the episode's position ``(task, episode)`` in the call,
never by the order of draws: an episode depends only on the seed, its position, its task and
its parameters. This is what lets a backend split a call into pieces (Ray actors) and re-run a
lost piece alone, and still return what one process would have.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch.distributions import Normal

from metarobot.agent import Adaptation
from metarobot.episodes import Episodes
from metarobot.policies import Params
from metarobot.sampling._envs import EnvFn, EnvSlice, EnvSpec, StepBuffers
from metarobot.tasks import Task
from metarobot.threads import torch_threads

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

    This is the interface every backend implements (:meth:`_sample`) and the checks they share.
    The same seed gives the same episodes on every backend; see the module docstring for why.
    Use a sampler as a context manager, or call :meth:`close`, to release its environments and
    workers.

    Args:
        env_fn: Picklable factory of one bare env (``set_task``, ``horizon``, 1-D Box spaces),
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


_ALIGN_TASKS = 16
"""Period, in tasks, of the forward pass's memory layout; see :class:`LockstepSampler`."""


@contextmanager
def _single_threaded(device: torch.device) -> Iterator[None]:
    """Run CPU torch work with one intra-op thread, restoring the previous count after.

    With several threads, a CPU matrix product is split differently for different batch shapes
    (one task alone takes another path than the same task in a batch), and the results then
    differ in the last bits. One thread is also what training runs use while sampling (see
    :mod:`metarobot.threads`).
    """
    if device.type != "cpu":
        yield
        return
    with torch_threads(1):
        yield


class LockstepSampler(Sampler):
    """Steps all ``N x E`` environments in lockstep, one batched forward pass per step.

    Each step gathers every observation into one ``[N, E, obs_dim]`` tensor on the policy's
    device, runs one batched forward pass (``policy.batched_distribution``), adds the action
    noise of :func:`action_noise` scaled by the policy's standard deviation, stores the raw
    actions and their log-probabilities, and sends the actions, clipped to the action space, to
    the environments. An episode ends at termination, truncation or the horizon; stepping stops
    once every episode has ended.

    A slice of a batch (``first_task > 0``, as a Ray actor samples) gives bitwise the rows the
    whole batch gives, which takes care on the CPU: the matrix kernels' rounding depends on the
    alignment of each task's rows in memory, so the forward pass runs on fresh tensors (64-byte
    aligned) with ``first_task % 16`` zero tasks in front of the slice. Every task's rows, and
    those of every intermediate result, then start at the same offset modulo 64 bytes as in the
    whole batch. The forward pass also runs single-threaded (:func:`_single_threaded`).

    Subclasses provide the environments (:meth:`_reset_envs`, :meth:`_step_envs`).
    """

    def _set_spec(self, spec: EnvSpec) -> None:
        super()._set_spec(spec)
        self._action_low = np.asarray(spec.action_low, dtype=np.float32)
        self._action_high = np.asarray(spec.action_high, dtype=np.float32)

    def _collect(self, request: Request) -> list[Episodes]:
        started = time.perf_counter()
        (seed,) = request.seeds  # one round: several adapt on the workers, which these lack
        n, e, first_task = len(request.tasks), request.episodes_per_task, request.first_task
        env_seeds = episode_seeds(seed, n, e, first_task)
        noise = action_noise(seed, n, e, request.horizon, self.env_spec.act_dim, first_task)
        pad = first_task % _ALIGN_TASKS
        # Fresh memory (never a broadcast or offset view) laid out as the whole batch's.
        params = {
            name: torch.cat([p.new_zeros((pad, *p.shape[1:])), p.detach()])
            for name, p in request.params.items()
        }
        first = next(iter(params.values()))
        with torch.no_grad(), _single_threaded(first.device):
            return [self._rollout(request.tasks, params, pad, env_seeds, noise, started)]

    def _rollout(
        self,
        tasks: list[Task],
        params: Params,
        pad: int,
        env_seeds: np.ndarray,
        noise_array: np.ndarray,
        started: float,
    ) -> Episodes:
        """The loop; ``params`` hold ``pad`` zero tasks in front (see the class docstring)."""
        n, e, t_max = noise_array.shape[:3]
        m = n * e
        obs_dim, act_dim = self.env_spec.obs_dim, self.env_spec.act_dim
        first = next(iter(params.values()))
        device, dtype = first.device, first.dtype

        env_tasks = [task for task in tasks for _ in range(e)]
        buffers = self._reset_envs(env_tasks, env_seeds.reshape(-1).tolist())
        env_seconds = time.perf_counter() - started
        policy_seconds = 0.0
        obs_now, actions_now = buffers.obs[:m], buffers.actions[:m]
        rewards_now, infos_now = buffers.rewards[:m], buffers.infos[:m]
        terminated, truncated = buffers.terminated[:m], buffers.truncated[:m]
        unstable_now, active = buffers.unstable[:m], buffers.active[:m]
        active[:] = True

        # Time-major history, so that each step writes contiguous rows.
        obs_hist = np.zeros((t_max, m, obs_dim), dtype=np.float32)
        reward_hist = np.zeros((t_max, m), dtype=np.float64)
        mask_hist = np.zeros((t_max, m), dtype=np.bool_)
        info_hist = np.zeros((t_max, m, 0), dtype=np.float64)
        unstable = np.zeros(m, dtype=np.bool_)
        ended = np.empty(m, dtype=np.bool_)
        actions_hist = torch.zeros((t_max, n, e, act_dim), device=device, dtype=dtype)
        log_prob_hist = torch.zeros((t_max, n, e), device=device, dtype=dtype)
        # Time-major, like the histories: each step reads one contiguous block.
        noise = torch.from_numpy(np.ascontiguousarray(np.moveaxis(noise_array, 2, 0)))
        noise = noise.to(device=device, dtype=dtype)
        obs_in = torch.zeros((pad + n, e, obs_dim), device=device, dtype=dtype)
        low, high = self._action_low, self._action_high

        steps = 0
        for t in range(t_max):
            mask_hist[t] = active
            obs_hist[t] = obs_now
            tic = time.perf_counter()
            obs_in[pad:].copy_(torch.from_numpy(obs_hist[t]).view(n, e, obs_dim))
            padded = self.policy.batched_distribution(obs_in, params)
            if not isinstance(padded, Normal):
                raise TypeError(
                    f"batched_distribution must return a torch Normal, got {type(padded).__name__}"
                )
            dist = Normal(padded.loc[pad:], padded.scale[pad:], validate_args=False)
            actions = actions_hist[t]
            torch.add(dist.loc, dist.scale * noise[t], out=actions)
            torch.sum(dist.log_prob(actions), dim=-1, out=log_prob_hist[t])
            np.clip(actions.reshape(m, act_dim).cpu().numpy(), low, high, out=actions_now)
            toc = time.perf_counter()
            self._step_envs()
            policy_seconds += toc - tic
            env_seconds += time.perf_counter() - toc

            reward_hist[t] = rewards_now
            slots = self._num_info_slots()
            if slots:
                if slots > info_hist.shape[2]:
                    grown = np.zeros((t_max, m, max(slots, 2 * info_hist.shape[2])))
                    grown[:, :, : info_hist.shape[2]] = info_hist
                    info_hist = grown
                info_hist[t, :, :slots] = infos_now[:, :slots]
            np.logical_or(terminated, truncated, out=ended)
            ended &= active
            unstable |= unstable_now & active
            steps += int(np.count_nonzero(active))
            if ended.any():
                active &= ~ended
                # Zeros rather than the last observation: padding stays finite and zero.
                obs_now[ended] = 0.0
                if not active.any():
                    break

        # Workers with no active environment are not stepped, so their rows hold stale values.
        reward_hist = np.where(mask_hist, reward_hist, 0.0)
        info_hist = np.where(mask_hist[:, :, None], info_hist, 0.0)
        infos = {}
        slices = self._info_slices()
        for key in sorted({key for _, _, keys in slices for key in keys}):
            values = np.zeros((t_max, m), dtype=np.float32)
            for lo, hi, keys in slices:
                if key in keys:
                    values[:, lo:hi] = info_hist[:, lo:hi, keys.index(key)]
            infos[key] = _task_major(values, n, e, device)
        masks = _task_major(mask_hist.astype(np.float32), n, e, device)
        real = masks > 0
        episodes = Episodes(
            observations=_task_major(obs_hist, n, e, device),
            actions=torch.where(real[..., None], actions_hist.permute(1, 2, 0, 3), 0.0).to(
                torch.float32
            ),
            rewards=_task_major(reward_hist.astype(np.float32), n, e, device),
            masks=masks,
            log_probs=torch.where(real, log_prob_hist.permute(1, 2, 0), 0.0).to(torch.float32),
            infos=infos,
            unstable=torch.from_numpy(unstable.reshape(n, e)).to(device),
        )
        self.last_stats = SamplerStats(
            env_steps=steps,
            seconds=time.perf_counter() - started,
            policy_seconds=policy_seconds,
            env_seconds=env_seconds,
        )
        return episodes

    @abstractmethod
    def _reset_envs(self, tasks: list[Task], seeds: list[int]) -> StepBuffers:
        """Set task ``tasks[i]`` on env ``i``, reset it with ``seeds[i]`` and write its obs.

        Returns buffers with room for at least ``len(tasks)`` environments.
        """

    @abstractmethod
    def _step_envs(self) -> None:
        """Step every environment whose ``active`` flag is set, with its row of ``actions``."""

    @abstractmethod
    def _num_info_slots(self) -> int:
        """Info slots in use this call (the most of any slice)."""

    @abstractmethod
    def _info_slices(self) -> list[tuple[int, int, list[str]]]:
        """``(lo, hi, keys)`` per env slice: info slot ``k`` of rows ``lo..hi`` is ``keys[k]``."""


def _task_major(values: np.ndarray, n: int, e: int, device: torch.device) -> torch.Tensor:
    """``[T, N*E, ...]`` numpy -> ``[N, E, T, ...]`` contiguous tensor on ``device``."""
    t_max = values.shape[0]
    batched = values.reshape(t_max, n, e, *values.shape[2:])
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(batched, 0, 2))).to(device)


class LocalSampler(LockstepSampler):
    """In-process backend: the environments live in a list and are stepped one after another.

    Args:
        env_fn: Factory of one bare env.
        policy: The policy.
    """

    def __init__(self, env_fn: EnvFn, policy: BatchedPolicy) -> None:
        super().__init__(env_fn, policy)
        self._envs = EnvSlice(env_fn)
        self._set_spec(self._envs.spec())
        self._buffers = self._allocate(1)
        self._size = 0

    def _allocate(self, capacity: int) -> StepBuffers:
        spec = self.env_spec
        _, nbytes = StepBuffers.layout(capacity, spec.obs_dim, spec.act_dim)
        return StepBuffers(bytearray(nbytes), capacity, spec.obs_dim, spec.act_dim)

    def _reset_envs(self, tasks: list[Task], seeds: list[int]) -> StepBuffers:
        if len(tasks) > self._buffers.capacity:
            self._buffers = self._allocate(len(tasks))
        self._size = len(tasks)
        self._envs.reset(self._buffers, 0, tasks, seeds)
        return self._buffers

    def _step_envs(self) -> None:
        self._envs.step(self._buffers, 0, self._size)

    def _num_info_slots(self) -> int:
        return len(self._envs.info_keys)

    def _info_slices(self) -> list[tuple[int, int, list[str]]]:
        return [(0, self._size, list(self._envs.info_keys))]

    def close(self) -> None:
        """Close the environments."""
        if not self._closed:
            self._envs.close()
        super().close()
