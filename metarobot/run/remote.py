"""The inner loop as a picklable callable, for samplers that adapt on their workers (Ray)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

import agents
from metarobot.agent import Adaptation, Agent
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy
from metarobot.run.config import RunConfig


class AgentAdaptation:
    """``agent.adapt`` as a callable that pickles to the agent's state rather than the agent.

    The Ray backend ships it to its actors to adapt there (``adapt_on="workers"``). Unpickled,
    it rebuilds the agent on the CPU from the run config and the state the agent had when it was
    pickled, i.e. at the start of this iteration: agents themselves need not be picklable (LEO
    holds a ``torch.Generator``), and an agent on a GPU still adapts on the actors' CPUs.

    Args:
        agent: The agent whose inner loop to run.
        config: The run's resolved config (which agent and policy to rebuild).
    """

    def __init__(self, agent: Agent[Any], config: RunConfig) -> None:
        self.agent = agent
        self.config = config

    def __call__(self, episodes: Episodes, previous: Adaptation[Any]) -> Adaptation[Any]:
        """One inner-loop update (see :meth:`metarobot.agent.Agent.adapt`)."""
        return self.agent.adapt(episodes, previous)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        policy = self.agent.policy
        state = _to_cpu(self.agent.state_dict())
        return _cpu_adaptation, (self.config, policy.obs_dim, policy.act_dim, state)


def _cpu_adaptation(
    config: RunConfig, obs_dim: int, act_dim: int, state: dict[str, Any]
) -> AgentAdaptation:
    policy = GaussianMLPPolicy(obs_dim, act_dim, config.hidden_sizes)
    agent = agents.make_agent(config.agent, policy, None, "cpu")
    agent.load_state_dict(state)
    return AgentAdaptation(agent, replace(config, device="cpu"))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value
