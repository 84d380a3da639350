"""Build a run's pieces (family, policy, agent, sampler) from its config, by registry name.

This is where task families and agents meet; training, evaluation and rendering all assemble
their objects here so that a run directory means the same thing to each of them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

import agents
import envs
from metarobot.agent import Agent
from metarobot.policies import GaussianMLPPolicy
from metarobot.run.config import RunConfig
from metarobot.sampling import EnvFn, Sampler, make_sampler
from metarobot.seeding import AGENT_ENVIRONMENTS, INITIAL_WEIGHTS, derive_seed
from metarobot.tasks import TaskFamily
from metarobot.threads import set_cpu_threads


@dataclass
class RunParts:
    """Everything a run needs, built from its resolved config."""

    config: RunConfig
    family: TaskFamily
    agent: Agent[Any]
    sampler: Sampler

    def close(self) -> None:
        """Stop sampler workers."""
        self.sampler.close()


def resolve(config: RunConfig) -> RunConfig:
    """Fill in family defaults and pick the device."""
    return config.resolved(envs.get_family(config.family))


def sampler_env_fn(
    family: str, horizon: int | None = None, env_options: Mapping[str, Any] | None = None
) -> EnvFn:
    """The picklable env factory a run's sampler uses.

    Samplers step hundreds of envs per process, so they share one compiled model where the
    family allows it (see ``envs.make``).
    """
    share_model = envs.env_class(family).can_share_model
    return functools.partial(
        envs.make, family, share_model=share_model, horizon=horizon, **(env_options or {})
    )


def probe_env(family: str, env_options: Mapping[str, Any]) -> tuple[int, int]:
    """Observation and action sizes of ``family``'s env; a clear error for options it rejects."""
    try:
        probe = envs.make(family, **env_options)
    except TypeError as error:
        raise ValueError(f"env_options {dict(env_options)} do not fit {family}: {error}") from None
    obs_dim = int(probe.observation_space.shape[0])  # type: ignore[index]
    act_dim = int(probe.action_space.shape[0])  # type: ignore[index]
    probe.close()
    return obs_dim, act_dim


def build(config: RunConfig, agent_config: Any = None) -> RunParts:
    """Family, freshly initialized agent (seeded) and sampler for a config (resolved here)."""
    config = resolve(config)
    family = envs.get_family(config.family)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device; use --device cpu")
    # Policy batches are small: intra-op threads only contend with the env-stepping workers
    # (and, oversubscribed, slow every update tenfold). The meta-update takes more for itself.
    set_cpu_threads(config.device)
    obs_dim, act_dim = probe_env(config.family, config.env_options)
    torch.manual_seed(derive_seed(config.seed, INITIAL_WEIGHTS))
    policy = GaussianMLPPolicy(obs_dim, act_dim, config.hidden_sizes)
    agent = agents.make_agent(config.agent, policy, agent_config, config.device)
    env_options: Mapping[str, Any] = config.env_options
    env_fn = sampler_env_fn(config.family, config.horizon, env_options)
    own_env_fn = functools.partial(
        envs.make, config.family, horizon=config.horizon, resample_tasks=True, **env_options
    )
    agent.use_environments(own_env_fn, family, derive_seed(config.seed, AGENT_ENVIRONMENTS))
    sampler = make_sampler(config.backend, env_fn, agent.policy, config.workers)
    return RunParts(config, family, agent, sampler)
