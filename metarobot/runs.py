"""Build a run's pieces (family, policy, agent, sampler) from its config, by registry name.

This is where task families and agents meet; training, evaluation and rendering all assemble
their objects here so that a run directory means the same thing to each of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

import agents
import envs
from agents.base import Agent
from metarobot.checkpoints import checkpoint_path, list_checkpoints, load_checkpoint
from metarobot.config import RunConfig, load_config
from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import EnvFn, Sampler, make_sampler
from metarobot.tasks import TaskFamily


def derive_seed(*keys: int) -> int:
    """A 32-bit seed from a tuple of integers (run seed, iteration, step, ...)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


@runtime_checkable
class UsesEnvironments(Protocol):
    """An agent that also steps environments of its own (multi-task PPO pretrains on them)."""

    def use_environments(self, env_fn: EnvFn, family: TaskFamily, seed: int) -> None:
        """Receive a factory of envs that draw a train task at every reset, the family, a seed."""


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
    return config.resolved(envs.get_family(config.family).horizon)


def sampler_env_fn(family: str, horizon: int | None = None) -> EnvFn:
    """The picklable env factory a run's sampler uses.

    Samplers step hundreds of envs per process, so they share one compiled model where the
    family allows it (see ``envs.make``).
    """
    share_model = envs.env_class(family).can_share_model
    return functools.partial(envs.make, family, share_model=share_model, horizon=horizon)


def build(config: RunConfig, agent_config: Any = None) -> RunParts:
    """Family, freshly initialized agent (seeded) and sampler for a config (resolved here)."""
    config = resolve(config)
    family = envs.get_family(config.family)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device; use --device cpu")
    if config.device == "cpu":
        # Policy batches are small: intra-op threads only contend with the env-stepping workers
        # (and, oversubscribed, slow every update tenfold).
        torch.set_num_threads(1)
    probe = envs.make(config.family)
    obs_dim = int(probe.observation_space.shape[0])  # type: ignore[index]
    act_dim = int(probe.action_space.shape[0])  # type: ignore[index]
    probe.close()
    torch.manual_seed(derive_seed(config.seed, 0xC0FFEE))
    policy = GaussianMLPPolicy(obs_dim, act_dim, config.hidden_sizes)
    agent = agents.make_agent(config.agent, policy, agent_config, config.device)
    env_fn = sampler_env_fn(config.family, config.horizon)
    if isinstance(agent, UsesEnvironments):
        own_env_fn = functools.partial(
            envs.make, config.family, horizon=config.horizon, resample_tasks=True
        )
        agent.use_environments(own_env_fn, family, derive_seed(config.seed, 0x5B3))
    sampler = make_sampler(config.backend, env_fn, agent.policy, config.workers)
    return RunParts(config, family, agent, sampler)


def load_run(
    run_dir: Path, checkpoint: int | None = None, device: str | None = None, **overrides: Any
) -> tuple[RunParts, int]:
    """Rebuild a trained run from its directory and load a checkpoint (the latest by default).

    Returns:
        The run's parts and the iteration of the loaded checkpoint.
    """
    config, agent_table = load_config(run_dir / "config.toml")
    if device is not None:
        overrides["device"] = device
    if overrides:
        config = RunConfig.from_mapping({**config.__dict__, **overrides})
    parts = build(config, agent_table)
    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise ValueError(f"{run_dir} has no checkpoints yet")
    iteration = max(found) if checkpoint is None else checkpoint
    if iteration not in found:
        raise ValueError(f"{run_dir} has no checkpoint {iteration}; it has {sorted(found)}")
    state = load_checkpoint(
        checkpoint_path(run_dir / "checkpoints", iteration),
        expect={"agent_name": config.agent, "family": config.family},
    )
    parts.agent.load_state_dict(state["agent"])
    return parts, iteration
