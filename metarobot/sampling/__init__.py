"""Sampling: collect episodes for many (task, policy-parameters) pairs at once.

``make_sampler(backend, env_fn, policy, workers)`` builds a :class:`Sampler`; its
``sample(tasks, params, episodes_per_task, seed)`` steps all ``N x E`` environments in lockstep
with one batched forward pass per step and returns an :class:`~metarobot.episodes.Episodes`
batch. Backends: ``"local"`` (in-process) and ``"process"`` (worker processes over shared
memory); for the same seed they return identical episodes.

Layout: ``_envs`` steps a slice of environments into flat buffers (the same code runs in
process and in workers, which is what keeps the backends identical), ``base`` holds the
interface, the rollout driver and the local backend, ``process`` the worker-process backend.
"""

from __future__ import annotations

from metarobot.sampling._envs import EnvFn, EnvSpec
from metarobot.sampling.base import (
    BatchedPolicy,
    LocalSampler,
    Sampler,
    SamplerStats,
    action_seed,
    episode_seeds,
)
from metarobot.sampling.process import ProcessSampler

SAMPLER_BACKENDS: tuple[str, ...] = ("local", "process")
"""Names accepted by :func:`make_sampler`."""

__all__ = [
    "SAMPLER_BACKENDS",
    "BatchedPolicy",
    "EnvFn",
    "EnvSpec",
    "LocalSampler",
    "ProcessSampler",
    "Sampler",
    "SamplerStats",
    "action_seed",
    "episode_seeds",
    "make_sampler",
]


def make_sampler(backend: str, env_fn: EnvFn, policy: BatchedPolicy, workers: int = 1) -> Sampler:
    """Build a sampler by backend name.

    Args:
        backend: One of :data:`SAMPLER_BACKENDS`.
        env_fn: Picklable factory of one bare env, e.g. ``functools.partial(envs.make, name)``.
        policy: The policy whose batched parameters each ``sample`` call receives.
        workers: Worker processes of the ``"process"`` backend; ``"local"`` needs 1.

    Raises:
        ValueError: On an unknown backend (the message lists the valid ones) or a worker count
            the backend cannot use.
    """
    if backend == "local":
        if workers != 1:
            raise ValueError(
                f"the 'local' backend steps environments in this process; workers must be 1, "
                f"got {workers!r} (use backend 'process' for worker processes)"
            )
        return LocalSampler(env_fn, policy)
    if backend == "process":
        return ProcessSampler(env_fn, policy, workers=workers)
    raise ValueError(
        f"unknown sampler backend {backend!r}; valid backends: {', '.join(SAMPLER_BACKENDS)}"
    )
