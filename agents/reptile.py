"""Reptile for reinforcement learning: inner policy-gradient steps, outer interpolation.

Reads top to bottom: the config, the inner loop (``k`` rounds of fresh rollouts, each followed by
``inner_epochs`` steps on a VPG or PPO loss of one optimizer that lasts the task's ``k`` rounds,
every task at once), and the outer update ``theta <- theta + epsilon * mean_i(phi_i - theta)``
with a linearly annealed ``epsilon``.
Follows Nichol, Achiam and Schulman (2018); the paper's experiments are supervised, so the
policy-gradient inner loss is the RL analogue of its minibatch loss.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from agents.common import (
    check_meta_batch,
    clipped_surrogate_loss,
    inner_start,
    learning_episodes,
    policy_gradient_loss,
)
from metarobot.agent import Adaptation, Agent, MetaBatch, check_config
from metarobot.episodes import Episodes
from metarobot.optim import flatten_params
from metarobot.policies import GaussianMLPPolicy, detach_params
from metarobot.returns import compute_advantages

INNER_LOSSES = ("vpg", "ppo")
INNER_OPTIMIZERS = ("adam", "sgd")
InnerState = dict[str, Any]
"""A task batch's inner optimizer state between rounds (``torch.optim.Optimizer.state_dict``)."""


@dataclass(frozen=True)
class ReptileConfig:
    """Reptile hyperparameters.

    The optimizer defaults are the Reptile paper's (Adam with ``beta1 = 0`` in the inner loop, an
    outer step size annealed linearly from 1 to 0); the RL-specific ones (loss, epochs, clipping,
    discounting) are PPO's and MAML's.
    """

    num_inner_steps: int = 5
    """``k``: inner rounds per task, each on freshly sampled episodes (paper: 5 on Omniglot)."""
    inner_loss: str = "ppo"
    """``"vpg"`` (REINFORCE with baseline) or ``"ppo"`` (clipped surrogate)."""
    inner_epochs: int = 1
    """Optimizer steps per round on the same episodes; more than 1 is what PPO's clipping is for."""
    clip: float = 0.2
    """PPO's clipping range of the probability ratio (unused by ``"vpg"``)."""
    inner_optimizer: str = "adam"
    """``"adam"`` or ``"sgd"``; its state lasts a task's ``k`` rounds (see :class:`Reptile`)."""
    inner_lr: float = 1e-3
    """Inner optimizer step size (paper: 0.001 with Adam)."""
    adam_beta1: float = 0.0
    """Adam's first-moment decay; the paper uses 0, i.e. no momentum within a task."""
    adam_beta2: float = 0.999
    """Adam's second-moment decay."""
    epsilon_start: float = 1.0
    """Outer step size at the first meta-update (paper: 1)."""
    epsilon_end: float = 0.0
    """Outer step size reached after ``anneal_updates`` meta-updates, and kept after (paper: 0)."""
    anneal_updates: int = 100
    """Meta-updates over which epsilon is annealed; set it to the run's iterations."""
    gamma: float = 0.99
    """Discount factor of returns and advantages."""
    gae_lambda: float = 1.0
    """GAE lambda of the inner loss's advantages (1: return minus the linear baseline)."""

    def __post_init__(self) -> None:
        check_config(
            self,
            {
                "num_inner_steps": (self.num_inner_steps >= 1, ">= 1"),
                "inner_loss": (self.inner_loss in INNER_LOSSES, f"one of {INNER_LOSSES}"),
                "inner_epochs": (self.inner_epochs >= 1, ">= 1"),
                "clip": (self.clip > 0, "> 0"),
                "inner_optimizer": (
                    self.inner_optimizer in INNER_OPTIMIZERS,
                    f"one of {INNER_OPTIMIZERS}",
                ),
                "inner_lr": (self.inner_lr > 0, "> 0"),
                "adam_beta1": (0 <= self.adam_beta1 < 1, "in [0, 1)"),
                "adam_beta2": (0 <= self.adam_beta2 < 1, "in [0, 1)"),
                "epsilon_start": (self.epsilon_start > 0, "> 0"),
                "epsilon_end": (self.epsilon_end >= 0, ">= 0"),
                "anneal_updates": (self.anneal_updates >= 1, ">= 1"),
                "gamma": (0 <= self.gamma <= 1, "in [0, 1]"),
                "gae_lambda": (0 <= self.gae_lambda <= 1, "in [0, 1]"),
            },
        )


class Reptile(Agent[ReptileConfig]):
    """Reptile meta-learning on policy-gradient inner loops.

    Nichol, Achiam and Schulman, "On First-Order Meta-Learning Algorithms", arXiv 2018
    (https://arxiv.org/abs/1803.02999).

    Inner loop (per task ``i``, all tasks at once): starting from the meta-parameters ``theta``,
    ``k = num_inner_steps`` rounds, each sampling fresh episodes with the current parameters
    (the training loop and evaluation do this between :meth:`adapt` calls) and taking
    ``inner_epochs`` steps of the inner optimizer on the VPG or PPO loss; the result is
    ``phi_i``. As in the paper, one optimizer serves a task's whole inner loop: its state (Adam's
    moments and step count) is the :class:`~metarobot.agent.Adaptation` state that each
    :meth:`adapt` call hands to the next. The per-task losses are summed, so each task's
    parameters (a leading task axis on every tensor) get their own gradient, and Adam, being
    element-wise, keeps per-task moments.

    Outer update: ``theta <- theta + epsilon_t * mean_i(phi_i - theta)``, ``epsilon_t`` linear
    from ``epsilon_start`` to ``epsilon_end`` over ``anneal_updates`` updates.

    Design choices:

    * ``phi_i`` is recomputed in :meth:`meta_update` by replaying the inner loop on the stored
      train episodes. The replay is deterministic (same start, same episodes, same optimizer
      state carried from round to round), so it equals what the training loop sampled with,
      and ``meta_update`` stays a function of its ``MetaBatch`` alone; it costs
      ``k * inner_epochs`` backward passes, small next to sampling ``k`` rounds of rollouts.
    * Adam's moments span all ``k * inner_epochs`` steps of a task. Its first step is
      ``inner_lr * sign(grad)`` per coordinate; later ones scale each coordinate by its
      gradient's recent magnitude over the earlier rounds too, rather than restarting from a
      sign step every round.
    * The validation episodes (sampled with ``phi_i``) are not used for learning, only for the
      post-adaptation metrics the training loop logs: using them as a ``k + 1``-th step would
      meta-train a longer inner loop than the ``k`` steps used at test time.
    """

    config_class = ReptileConfig

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        config: ReptileConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(policy, config, device)
        self.updates = 0
        """Meta-updates done so far; drives the annealing and is saved for exact resume."""

    @property
    def num_inner_steps(self) -> int:
        """Rounds of rollouts and inner updates per task (``config.num_inner_steps``)."""
        return self.config.num_inner_steps

    @property
    def epsilon(self) -> float:
        """The outer step size of the next meta-update."""
        config = self.config
        progress = min(self.updates / config.anneal_updates, 1.0)
        return config.epsilon_start + (config.epsilon_end - config.epsilon_start) * progress

    @torch.enable_grad()
    def adapt(
        self, episodes: Episodes, previous: Adaptation[InnerState] | None = None
    ) -> Adaptation[InnerState]:
        """One inner round per task; see :meth:`metarobot.agent.Agent.adapt`.

        Runs ``inner_epochs`` optimizer steps on ``episodes`` from ``previous`` (the
        meta-parameters and a fresh optimizer when ``None``), with autograd enabled even under
        ``torch.no_grad``. The state is the inner optimizer's ``state_dict``.
        """
        episodes = learning_episodes(episodes, self.device)
        params = None if previous is None else previous.params
        current = inner_start(self.policy, params, episodes.num_tasks, copy=True)
        advantages = compute_advantages(episodes, self.config.gamma, self.config.gae_lambda)
        optimizer = self._inner_optimizer(list(current.values()))
        if previous is not None and previous.state is not None:
            # Loading keeps the given tensors, which steps update in place: copy them, so that
            # the caller's Adaptation still holds the state it had.
            optimizer.load_state_dict(copy.deepcopy(previous.state))
        for _ in range(self.config.inner_epochs):
            distribution = self.policy.batched_distribution(episodes.observations, current)
            optimizer.zero_grad()
            self._inner_loss(distribution, episodes, advantages).sum().backward()
            optimizer.step()
        return Adaptation(detach_params(current), optimizer.state_dict())

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """The Reptile interpolation; see :meth:`metarobot.agent.Agent.meta_update`.

        Returns:
            ``meta/epsilon`` (the step size used), ``meta/displacement_norm`` (norm of
            ``mean_i(phi_i - theta)``) and ``meta/updates`` (meta-updates done, this one
            included).
        """
        check_meta_batch(batch, self.num_inner_steps)
        adapted: Adaptation[InnerState] | None = None
        for episodes in batch.train:
            adapted = self.adapt(episodes, adapted)
        assert adapted is not None  # num_inner_steps >= 1
        epsilon = self.epsilon
        meta = self.policy.meta_parameters()
        phi = adapted.params
        with torch.no_grad():
            displacement = {name: phi[name].mean(dim=0) - p for name, p in meta.items()}
            for name, p in meta.items():
                p.add_(displacement[name], alpha=epsilon)
        self.updates += 1
        return {
            "meta/epsilon": epsilon,
            "meta/displacement_norm": flatten_params(displacement).norm().item(),
            "meta/updates": float(self.updates),
        }

    def state_dict(self) -> dict[str, Any]:
        """Policy, config and the update counter (the annealing schedule's position)."""
        return {**super().state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.updates = int(state["updates"])

    def _inner_loss(
        self, distribution: torch.distributions.Normal, episodes: Episodes, advantages: torch.Tensor
    ) -> torch.Tensor:
        if self.config.inner_loss == "ppo":
            return clipped_surrogate_loss(distribution, episodes, advantages, self.config.clip)
        return policy_gradient_loss(distribution, episodes, advantages)

    def _inner_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        config = self.config
        if config.inner_optimizer == "adam":
            return torch.optim.Adam(
                params, lr=config.inner_lr, betas=(config.adam_beta1, config.adam_beta2)
            )
        return torch.optim.SGD(params, lr=config.inner_lr)
