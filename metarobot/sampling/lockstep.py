"""The lockstep rollout loop, and the in-process backend that runs it on its own environments.

A lockstep backend only owns environments: it resets them and steps the active ones into
:class:`~metarobot.sampling.environments.StepBuffers`. Everything else (the batched forward
pass, action noise, clipping, masks, bookkeeping) happens in :class:`LockstepSampler`, in one
process, identically for every backend; the backends therefore produce the same ``Episodes``
bit for bit. Slice backends run this same loop in their workers, one slice of the tasks each.

The loop has two halves: stepping (:meth:`LockstepSampler._step_until_done`), which records
every step into a time-major :class:`_History`, and assembly (:meth:`_History.episodes`), which
zeroes what is not a real step and lays the history out as ``Episodes``.
"""

from __future__ import annotations

import time
from abc import abstractmethod

import numpy as np
import torch
from torch.distributions import Normal

from metarobot.episodes import Episodes
from metarobot.policies import Params
from metarobot.sampling.base import (
    BatchedPolicy,
    Request,
    Sampler,
    SamplerStats,
    action_noise,
    episode_seeds,
)
from metarobot.sampling.environments import EnvFn, EnvSpec, EnvStepper, StepBuffers
from metarobot.tasks import Task
from metarobot.threads import cpu_threads

_ALIGN_TASKS = 16
"""Period, in tasks, of the forward pass's memory layout; see :class:`LockstepSampler`."""


class _History:
    """What the loop records, time-major so that each step writes contiguous rows.

    Environment ``i`` is row ``i = task * E + episode``; ``actions`` and ``log_probs`` stay on
    the policy's device, with a task and an episode axis, as the forward pass produces them.
    """

    def __init__(
        self, n: int, e: int, t_max: int, spec: EnvSpec, device: torch.device, dtype: torch.dtype
    ) -> None:
        m = n * e
        self.n, self.e, self.device = n, e, device
        self.obs = np.zeros((t_max, m, spec.obs_dim), dtype=np.float32)
        self.rewards = np.zeros((t_max, m), dtype=np.float64)
        self.masks = np.zeros((t_max, m), dtype=np.bool_)
        self.infos = np.zeros((t_max, m, len(spec.info_keys)), dtype=np.float64)
        self.unstable = np.zeros(m, dtype=np.bool_)
        self.actions = torch.zeros((t_max, n, e, spec.act_dim), device=device, dtype=dtype)
        self.log_probs = torch.zeros((t_max, n, e), device=device, dtype=dtype)
        self.env_steps = 0

    def episodes(self, info_keys: tuple[str, ...]) -> Episodes:
        """The recorded steps as ``[N, E, T]`` ``Episodes``, zero wherever the mask is 0."""
        # Workers with no active environment are not stepped, so their rows hold stale values.
        rewards = np.where(self.masks, self.rewards, 0.0)
        infos = np.where(self.masks[:, :, None], self.infos, 0.0)
        masks = self._task_major(self.masks.astype(np.float32))
        real = masks > 0
        return Episodes(
            observations=self._task_major(self.obs),
            actions=torch.where(real[..., None], self.actions.permute(1, 2, 0, 3), 0.0).to(
                torch.float32
            ),
            rewards=self._task_major(rewards.astype(np.float32)),
            masks=masks,
            log_probs=torch.where(real, self.log_probs.permute(1, 2, 0), 0.0).to(torch.float32),
            infos={
                key: self._task_major(infos[:, :, column].astype(np.float32))
                for column, key in enumerate(info_keys)
            },
            unstable=torch.from_numpy(self.unstable.reshape(self.n, self.e)).to(self.device),
        )

    def _task_major(self, values: np.ndarray) -> torch.Tensor:
        """``[T, N*E, ...]`` numpy -> ``[N, E, T, ...]`` contiguous tensor on the device."""
        batched = values.reshape(values.shape[0], self.n, self.e, *values.shape[2:])
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(batched, 0, 2))).to(self.device)


class LockstepSampler(Sampler):
    """Steps all ``N x E`` environments in lockstep, one batched forward pass per step.

    Each step gathers every observation into one ``[N, E, obs_dim]`` tensor on the policy's
    device, runs one batched forward pass (``policy.batched_distribution``), adds the action
    noise of :func:`~metarobot.sampling.base.action_noise` scaled by the policy's standard
    deviation, stores the raw actions and their log-probabilities, and sends the actions,
    clipped to the action space, to the environments. An episode ends at termination,
    truncation or the horizon; stepping stops once every episode has ended.

    A slice of a batch (``first_task > 0``, as a slice worker samples) gives bitwise the rows
    the whole batch gives, which takes care on the CPU: the matrix kernels' rounding depends on
    the alignment of each task's rows in memory, so the forward pass runs on fresh tensors
    (64-byte aligned) with ``first_task % 16`` zero tasks in front of the slice. Every task's
    rows, and those of every intermediate result, then start at the same offset modulo 64 bytes
    as in the whole batch. The forward pass also runs on
    :data:`~metarobot.threads.SAMPLING_THREADS` threads (one).

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
        with torch.no_grad(), cpu_threads(first.device):
            env_tasks = [task for task in request.tasks for _ in range(e)]
            buffers = self._reset_envs(env_tasks, env_seeds.reshape(-1).tolist())
            reset_seconds = time.perf_counter() - started
            history = _History(n, e, request.horizon, self.env_spec, first.device, first.dtype)
            policy_seconds, env_seconds = self._step_until_done(
                buffers, params, pad, noise, history
            )
            episodes = history.episodes(self.env_spec.info_keys)
        self.last_stats = SamplerStats(
            env_steps=history.env_steps,
            seconds=time.perf_counter() - started,
            policy_seconds=policy_seconds,
            env_seconds=reset_seconds + env_seconds,
        )
        return [episodes]

    def _step_until_done(
        self,
        buffers: StepBuffers,
        params: Params,
        pad: int,
        noise_array: np.ndarray,
        history: _History,
    ) -> tuple[float, float]:
        """Step the reset environments until every episode has ended, recording each step.

        ``params`` hold ``pad`` zero tasks in front (see the class docstring). Returns the
        seconds spent in the policy and in the environments.
        """
        n, e, t_max = noise_array.shape[:3]
        m = n * e
        obs_now, actions_now = buffers.obs[:m], buffers.actions[:m]
        rewards_now, infos_now = buffers.rewards[:m], buffers.infos[:m]
        terminated, truncated = buffers.terminated[:m], buffers.truncated[:m]
        unstable_now, active = buffers.unstable[:m], buffers.active[:m]
        active[:] = True
        ended = np.empty(m, dtype=np.bool_)
        first = next(iter(params.values()))
        # Time-major, like the history: each step reads one contiguous block.
        noise = torch.from_numpy(np.ascontiguousarray(np.moveaxis(noise_array, 2, 0)))
        noise = noise.to(device=first.device, dtype=first.dtype)
        obs_dim = self.env_spec.obs_dim
        obs_in = torch.zeros((pad + n, e, obs_dim), device=first.device, dtype=first.dtype)
        policy_seconds = env_seconds = 0.0
        for t in range(t_max):
            history.masks[t] = active
            history.obs[t] = obs_now
            tic = time.perf_counter()
            obs_in[pad:].copy_(torch.from_numpy(history.obs[t]).view(n, e, obs_dim))
            self._act(obs_in, params, pad, noise[t], history.actions[t], history.log_probs[t])
            np.clip(
                history.actions[t].reshape(m, -1).cpu().numpy(),
                self._action_low,
                self._action_high,
                out=actions_now,
            )
            toc = time.perf_counter()
            self._step_envs()
            policy_seconds += toc - tic
            env_seconds += time.perf_counter() - toc

            history.rewards[t] = rewards_now
            history.infos[t] = infos_now
            np.logical_or(terminated, truncated, out=ended)
            ended &= active
            history.unstable |= unstable_now & active
            history.env_steps += int(np.count_nonzero(active))
            if ended.any():
                active &= ~ended
                # Zeros rather than the last observation: padding stays finite and zero.
                obs_now[ended] = 0.0
                if not active.any():
                    break
        return policy_seconds, env_seconds

    def _act(
        self,
        obs: torch.Tensor,
        params: Params,
        pad: int,
        noise: torch.Tensor,
        actions: torch.Tensor,
        log_probs: torch.Tensor,
    ) -> None:
        """One batched forward pass: write ``mean + std * noise`` and its log-probability."""
        padded = self.policy.batched_distribution(obs, params)
        if not isinstance(padded, Normal):
            raise TypeError(
                f"batched_distribution must return a torch Normal, got {type(padded).__name__}"
            )
        dist = Normal(padded.loc[pad:], padded.scale[pad:], validate_args=False)
        torch.add(dist.loc, dist.scale * noise, out=actions)
        torch.sum(dist.log_prob(actions), dim=-1, out=log_probs)

    @abstractmethod
    def _reset_envs(self, tasks: list[Task], seeds: list[int]) -> StepBuffers:
        """Set task ``tasks[i]`` on env ``i``, reset it with ``seeds[i]`` and write its obs.

        Returns buffers with room for at least ``len(tasks)`` environments.
        """

    @abstractmethod
    def _step_envs(self) -> None:
        """Step every environment whose ``active`` flag is set, with its row of ``actions``."""


class LocalSampler(LockstepSampler):
    """In-process backend: the environments live in a list and are stepped one after another.

    Args:
        env_fn: Factory of one bare env.
        policy: The policy.
    """

    def __init__(self, env_fn: EnvFn, policy: BatchedPolicy) -> None:
        super().__init__(env_fn, policy)
        self._envs = EnvStepper(env_fn)
        self._set_spec(self._envs.spec)
        self._buffers = StepBuffers.allocate(1, self.env_spec)
        self._size = 0

    def _reset_envs(self, tasks: list[Task], seeds: list[int]) -> StepBuffers:
        if len(tasks) > self._buffers.capacity:
            self._buffers = StepBuffers.allocate(len(tasks), self.env_spec)
        self._size = len(tasks)
        self._envs.reset(self._buffers, 0, tasks, seeds)
        return self._buffers

    def _step_envs(self) -> None:
        self._envs.step(self._buffers, 0, self._size)

    def close(self) -> None:
        """Close the environments."""
        if not self._closed:
            self._envs.close()
        super().close()
