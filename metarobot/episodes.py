"""The ``Episodes`` batch: what a sampler returns and what every agent learns from.

Everything is a tensor shaped ``[tasks, episodes, time, ...]`` so that one batched computation
(returns, baselines, losses; the policy's one ``baddbmm`` per layer over tasks) serves all tasks
of a meta-batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class Episodes:
    """Episodes of ``N`` tasks x ``E`` episodes x ``T`` steps.

    Steps after an episode ended (termination, truncation, or unstable physics) are padding: their
    ``masks`` entry is 0 and their values are zeros, so sums over time need no special casing.

    Attributes:
        observations: ``[N, E, T, obs_dim]`` float32, the observation the action was taken in.
        actions: ``[N, E, T, act_dim]`` float32, actions as sampled (before clipping to bounds).
        rewards: ``[N, E, T]`` float32.
        masks: ``[N, E, T]`` float32, 1 for real steps and 0 for padding.
        log_probs: ``[N, E, T]`` float32, log-probability of ``actions`` under the sampling policy.
        infos: Numeric per-step ``info`` entries (reward terms, ``success``), each ``[N, E, T]``.
        unstable: ``[N, E]`` bool, episodes cut short because the simulation went unstable.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    masks: torch.Tensor
    log_probs: torch.Tensor
    infos: dict[str, torch.Tensor]
    unstable: torch.Tensor

    @property
    def num_tasks(self) -> int:
        """``N``: tasks in the batch."""
        return self.rewards.shape[0]

    @property
    def episodes_per_task(self) -> int:
        """``E``: episodes per task."""
        return self.rewards.shape[1]

    @property
    def horizon(self) -> int:
        """``T``: the padded episode length."""
        return self.rewards.shape[2]

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.rewards.device

    def to(self, device: torch.device | str) -> Episodes:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device) for f in fields(self) if f.name != "infos"
        }
        return replace(self, infos={k: v.to(device) for k, v in self.infos.items()}, **moved)

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of each episode, ``[N, E]``."""
        return (self.rewards * self.masks).sum(dim=-1)

    def episode_lengths(self) -> torch.Tensor:
        """Real steps of each episode, ``[N, E]`` (below ``T`` where it ended early)."""
        return self.masks.sum(dim=-1)

    def episode_success(self) -> torch.Tensor:
        """Whether each episode succeeded at any step, ``[N, E]`` bool (all False without it)."""
        if "success" not in self.infos:
            return torch.zeros(self.rewards.shape[:2], dtype=torch.bool, device=self.device)
        return ((self.infos["success"] * self.masks) > 0).any(dim=-1)

    def task(self, index: int) -> Episodes:
        """The episodes of one task, keeping a task axis of size one."""
        return self.tasks(slice(index, index + 1))

    def tasks(self, index: slice) -> Episodes:
        """The episodes of a slice of the tasks (views, no copy)."""
        return Episodes(
            observations=self.observations[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            masks=self.masks[index],
            log_probs=self.log_probs[index],
            infos={k: v[index] for k, v in self.infos.items()},
            unstable=self.unstable[index],
        )
