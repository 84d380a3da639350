"""Sampling: collect episodes for many (task, policy-parameters) pairs at once.

``make_sampler(backend, env_fn, policy, workers)`` builds a :class:`Sampler`; its
``sample(tasks, params, episodes_per_task, seed)`` steps ``N x E`` environments in lockstep
with one batched forward pass per step and returns an :class:`~metarobot.episodes.Episodes`
batch. Backends: ``"local"`` (in-process), ``"process"`` (worker processes: stepping
environments for a policy on the driver's GPU, or running whole episodes of a slice of the
tasks with a CPU policy) and ``"ray"`` (Ray actors, each running whole episodes for a slice of
the tasks, on one machine or a cluster); for the same seed they return identical episodes.

Layout: ``_envs`` steps a slice of environments into flat buffers (the same code runs in
process and in workers, which is what keeps the backends identical), ``base`` holds the
interface, the lockstep rollout loop and the local backend, ``slices`` the splitting of a call
into task slices sampled whole by workers, ``process`` the worker-process backends,
``ray_backend`` the Ray backend (Ray is imported only when one is created).
"""

from __future__ import annotations

from metarobot.sampling._envs import EnvFn, EnvSpec
from metarobot.sampling.base import (
    Adapt,
    BatchedPolicy,
    LocalSampler,
    LockstepSampler,
    NonFiniteParametersError,
    Sampler,
    SamplerStats,
    action_noise,
    episode_seeds,
)
from metarobot.sampling.process import ProcessRolloutSampler, ProcessSampler
from metarobot.sampling.ray_backend import RaySampler

SAMPLER_BACKENDS: tuple[str, ...] = ("local", "process", "ray")
"""Names accepted by :func:`make_sampler`."""

__all__ = [
    "SAMPLER_BACKENDS",
    "Adapt",
    "BatchedPolicy",
    "EnvFn",
    "EnvSpec",
    "LocalSampler",
    "LockstepSampler",
    "NonFiniteParametersError",
    "ProcessRolloutSampler",
    "ProcessSampler",
    "RaySampler",
    "Sampler",
    "SamplerStats",
    "action_noise",
    "episode_seeds",
    "make_sampler",
]


def make_sampler(backend: str, env_fn: EnvFn, policy: BatchedPolicy, workers: int = 1) -> Sampler:
    """Build a sampler by backend name.

    Args:
        backend: One of :data:`SAMPLER_BACKENDS`.
        env_fn: Picklable factory of one bare env, e.g. ``functools.partial(envs.make, name)``.
        policy: The policy whose batched parameters each ``sample`` call receives.
        workers: Worker processes of the ``"process"`` backend (with the policy on the CPU,
            each runs whole episodes of a slice of the tasks: :class:`ProcessRolloutSampler`;
            on a GPU, they step environments for the driver's batched forward pass:
            :class:`ProcessSampler`), actors of the ``"ray"`` backend (which joins the Ray
            cluster of ``RAY_ADDRESS`` or ``ray start`` if there is one, else starts a local
            Ray; see :class:`RaySampler`); ``"local"`` needs 1.

    Raises:
        ValueError: On an unknown backend (the message lists the valid ones) or a worker count
            the backend cannot use, or (``"ray"``) if Ray is not installed.
    """
    if backend == "local":
        if workers != 1:
            raise ValueError(
                f"the 'local' backend steps environments in this process; workers must be 1, "
                f"got {workers!r} (use backend 'process' for worker processes)"
            )
        return LocalSampler(env_fn, policy)
    if backend == "process":
        if _on_cpu(policy):
            return ProcessRolloutSampler(env_fn, policy, workers=workers)
        return ProcessSampler(env_fn, policy, workers=workers)
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
