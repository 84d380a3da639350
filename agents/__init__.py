"""Meta-learners behind one protocol (:class:`metarobot.agent.Agent`), chosen by name.

Adding an agent means adding its module and one entry to ``AGENTS``; the CLI and the training
loop look agents up here and never import them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from agents.leo import LEO, LEOConfig
from agents.maml import MAML, MAMLConfig
from agents.reptile import Reptile, ReptileConfig
from agents.sb3 import PPOConfig, PPOMultiTask, PPOMultiTaskConfig, PPOScratch
from metarobot.agent import Agent, config_from_mapping
from metarobot.policies import GaussianMLPPolicy

AGENTS: dict[str, type[Agent[Any]]] = {
    "maml": MAML,
    "reptile": Reptile,
    "leo": LEO,
    "ppo-scratch": PPOScratch,
    "ppo-multitask": PPOMultiTask,
}

__all__ = [
    "AGENTS",
    "LEO",
    "MAML",
    "LEOConfig",
    "MAMLConfig",
    "PPOConfig",
    "PPOMultiTask",
    "PPOMultiTaskConfig",
    "PPOScratch",
    "Reptile",
    "ReptileConfig",
    "make_agent",
]


def make_agent(
    name: str,
    policy: GaussianMLPPolicy,
    config: Any = None,
    device: torch.device | str | None = None,
) -> Agent[Any]:
    """Build a registered agent.

    Args:
        name: A key of ``AGENTS``, e.g. ``"maml"``.
        policy: The meta-policy.
        config: The agent's config dataclass, a mapping of its fields (e.g. a TOML table; missing
            fields keep their defaults), or ``None`` for the defaults.
        device: Where the agent computes; ``None`` keeps the policy's device.

    Raises:
        ValueError: Unknown agent name, unknown config field, or a config of the wrong class.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; valid agents: {sorted(AGENTS)}")
    agent_class = AGENTS[name]
    if isinstance(config, Mapping):
        config = config_from_mapping(agent_class.config_class, config)
    elif config is not None and not isinstance(config, agent_class.config_class):
        raise ValueError(
            f"agent {name!r} takes a {agent_class.config_class.__name__}, "
            f"got {type(config).__name__}"
        )
    return agent_class(policy, config, device)
