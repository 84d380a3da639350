"""Sampling: collect episodes for many (task, policy-parameters) pairs at once.

``make_sampler(backend, env_fn, policy, workers)`` builds a :class:`Sampler`; its
``sample(tasks, params, episodes_per_task, seed)`` steps ``N x E`` environments in lockstep
with one batched forward pass per step and returns an :class:`~metarobot.episodes.Episodes`
batch. Backends (:data:`SAMPLER_BACKENDS`): ``"local"`` (in-process), ``"process"`` (worker
processes: holding the environments for a policy on the driver's GPU, or sampling whole slices
of the tasks with a CPU policy) and ``"ray"`` (Ray actors, each sampling a slice of the tasks,
on one machine or a cluster); for the same seed they return identical episodes.

Layout, from the bottom:

- ``environments``: the env contract (:class:`EnvSpec`, with the info keys an env declares)
  and :class:`~metarobot.sampling.environments.EnvStepper`, which steps a group of
  environments into flat buffers (the same code in process and in workers, which is what keeps
  the backends identical);
- ``base``: the :class:`Sampler` interface, its argument checks and the per-episode seeds;
- ``lockstep``: the lockstep rollout loop (:class:`LockstepSampler`: stepping, then assembly)
  and the in-process backend :class:`LocalSampler`;
- ``slices``: :class:`SliceSampler`, the one dispatch of task slices to workers that sample
  them whole (:class:`~metarobot.sampling.slices.SliceWorker`), shared by the next two;
- ``worker_pool`` and ``process``: the worker processes, and the process backends
  :class:`ProcessEnvSampler` (workers hold environments) and :class:`ProcessSliceSampler`
  (workers sample task slices);
- ``ray_backend``: :class:`RaySampler`, a slice backend on Ray actors.

Importing this package is light (no torch): the names above load on first use, so that the
command line can offer :data:`SAMPLER_BACKENDS` without loading them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metarobot.sampling.base import (
        Adapt,
        BatchedPolicy,
        NonFiniteParametersError,
        Sampler,
        SamplerStats,
        action_noise,
        episode_seeds,
    )
    from metarobot.sampling.environments import EnvFn, EnvSpec
    from metarobot.sampling.lockstep import LocalSampler, LockstepSampler
    from metarobot.sampling.process import ProcessEnvSampler, ProcessSliceSampler
    from metarobot.sampling.ray_backend import RaySampler
    from metarobot.sampling.slices import SliceSampler

SAMPLER_BACKENDS: tuple[str, ...] = ("local", "process", "ray")
"""Names accepted by :func:`make_sampler` (and by a run's ``backend``)."""

_MODULES = {
    "Adapt": "base",
    "BatchedPolicy": "base",
    "NonFiniteParametersError": "base",
    "Sampler": "base",
    "SamplerStats": "base",
    "action_noise": "base",
    "episode_seeds": "base",
    "EnvFn": "environments",
    "EnvSpec": "environments",
    "LocalSampler": "lockstep",
    "LockstepSampler": "lockstep",
    "ProcessEnvSampler": "process",
    "ProcessSliceSampler": "process",
    "RaySampler": "ray_backend",
    "SliceSampler": "slices",
}
"""The module of each public name, loaded on first use."""

__all__ = [
    "SAMPLER_BACKENDS",
    "Adapt",
    "BatchedPolicy",
    "EnvFn",
    "EnvSpec",
    "LocalSampler",
    "LockstepSampler",
    "NonFiniteParametersError",
    "ProcessEnvSampler",
    "ProcessSliceSampler",
    "RaySampler",
    "Sampler",
    "SamplerStats",
    "SliceSampler",
    "action_noise",
    "episode_seeds",
    "make_sampler",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def make_sampler(backend: str, env_fn: EnvFn, policy: BatchedPolicy, workers: int = 1) -> Sampler:
    """Build a sampler by backend name.

    Args:
        backend: One of :data:`SAMPLER_BACKENDS`.
        env_fn: Picklable factory of one bare env, e.g. ``functools.partial(envs.make, name)``.
        policy: The policy whose batched parameters each ``sample`` call receives.
        workers: Worker processes of the ``"process"`` backend (with the policy on the CPU,
            each samples a slice of the tasks whole: :class:`ProcessSliceSampler`; on a GPU,
            they hold the environments that the driver steps with its batched forward pass:
            :class:`ProcessEnvSampler`), actors of the ``"ray"`` backend (which joins the Ray
            cluster of ``RAY_ADDRESS`` or ``ray start`` if there is one, else starts a local
            Ray; see :class:`RaySampler`); ``"local"`` needs 1.

    Raises:
        ValueError: On an unknown backend (the message lists the valid ones) or a worker count
            the backend cannot use, or (``"ray"``) if Ray is not installed.
    """
    from metarobot.sampling.lockstep import LocalSampler
    from metarobot.sampling.process import ProcessEnvSampler, ProcessSliceSampler
    from metarobot.sampling.ray_backend import RaySampler

    if backend == "local":
        if workers != 1:
            raise ValueError(
                f"the 'local' backend steps environments in this process; workers must be 1, "
                f"got {workers!r} (use backend 'process' for worker processes)"
            )
        return LocalSampler(env_fn, policy)
    if backend == "process":
        if _on_cpu(policy):
            return ProcessSliceSampler(env_fn, policy, workers=workers)
        return ProcessEnvSampler(env_fn, policy, workers=workers)
    if backend == "ray":
        return RaySampler(env_fn, policy, workers=workers)
    raise ValueError(
        f"unknown sampler backend {backend!r}; valid backends: {', '.join(SAMPLER_BACKENDS)}"
    )


def _on_cpu(policy: BatchedPolicy) -> bool:
    """Whether the policy's parameters live on the CPU (or it has none to say otherwise)."""
    parameters = getattr(policy, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first is None or first.device.type == "cpu"
