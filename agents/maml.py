"""Policy-gradient MAML with a TRPO outer loop.

Reads top to bottom: the config, the inner step (a vanilla policy-gradient step per task, batched
over tasks), the post-adaptation surrogate, and the TRPO meta-update on top of it. Follows
Finn et al. (2017) and the reference implementation tristandeleu/pytorch-maml-rl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.distributions import Normal, kl_divergence

from agents.base import Agent, MetaBatch, check_config
from agents.common import (
    check_meta_batch,
    gradient,
    inner_start,
    learning_episodes,
    leaves,
    policy_gradient_loss,
)
from metarobot.episodes import Episodes
from metarobot.optim import (
    backtracking_line_search,
    conjugate_gradient,
    flatten_params,
    hessian_vector_product,
    unflatten_params,
)
from metarobot.policies import Params, detach_params, expand_params
from metarobot.returns import compute_advantages, task_mean


@dataclass(frozen=True)
class MAMLConfig:
    """MAML hyperparameters; the defaults are those of the MAML paper's locomotion experiments."""

    inner_lr: float = 0.1
    """Step size of the inner policy-gradient update (the paper's alpha)."""
    num_inner_steps: int = 1
    """Inner updates per task, each on freshly sampled episodes (the paper trains with 1)."""
    gamma: float = 0.99
    """Discount factor of returns and advantages."""
    gae_lambda: float = 1.0
    """GAE lambda; 1 gives the paper's advantages, discounted return minus linear baseline."""
    first_order: bool = False
    """Drop the inner step's second derivatives (FOMAML): cheaper, treats d adapted/d meta as I."""
    max_kl: float = 1e-2
    """TRPO trust region: bound on the mean KL between old and new adapted policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations to approximate the natural gradient direction."""
    cg_damping: float = 1e-5
    """Multiple of the identity added to the KL Hessian to keep conjugate gradient stable."""
    ls_max_steps: int = 15
    """Backtracking line-search candidates before giving up on the update."""
    ls_backtrack_ratio: float = 0.8
    """Factor shrinking the step after each rejected line-search candidate."""

    def __post_init__(self) -> None:
        check_config(
            self,
            {
                "inner_lr": (self.inner_lr > 0, "> 0"),
                "num_inner_steps": (self.num_inner_steps >= 1, ">= 1"),
                "gamma": (0 <= self.gamma <= 1, "in [0, 1]"),
                "gae_lambda": (0 <= self.gae_lambda <= 1, "in [0, 1]"),
                "max_kl": (self.max_kl > 0, "> 0"),
                "cg_iters": (self.cg_iters >= 1, ">= 1"),
                "cg_damping": (self.cg_damping >= 0, ">= 0"),
                "ls_max_steps": (self.ls_max_steps >= 1, ">= 1"),
                "ls_backtrack_ratio": (0 < self.ls_backtrack_ratio < 1, "in (0, 1)"),
            },
        )


class _Rollouts(NamedTuple):
    """A meta-batch on the agent's device, with advantages computed once for the whole update.

    Advantages depend only on the episodes, never on the parameters, so the line search's many
    re-evaluations reuse them instead of refitting baselines.
    """

    train: list[tuple[Episodes, torch.Tensor]]
    valid: Episodes
    valid_advantages: torch.Tensor


class MAML(Agent[MAMLConfig]):
    """Model-Agnostic Meta-Learning for reinforcement learning, with a TRPO meta-optimizer.

    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks", ICML 2017 (https://arxiv.org/abs/1703.03400). The outer loop is TRPO (Schulman et
    al., "Trust Region Policy Optimization", ICML 2015) applied to the meta-parameters through the
    inner update, as in the paper's RL experiments.

    The inner loop is one vanilla policy-gradient step per task,
    ``theta_i = theta - inner_lr * grad L_i(theta)`` with
    ``L_i = -mean_valid_steps(log pi(a|s) * A)``, batched over tasks: the per-task losses are
    computed in one ``vmap``-ed forward pass and summed, so each task's parameters receive exactly
    the gradient of its own loss. The outer loss is the TRPO surrogate of the adapted policies on
    the validation episodes, differentiated through the inner step (second order unless
    ``first_order``).
    """

    config_class = MAMLConfig

    @property
    def num_inner_steps(self) -> int:
        """Inner updates per task (``config.num_inner_steps``)."""
        return self.config.num_inner_steps

    @torch.enable_grad()
    def adapt(self, episodes: Episodes, params: Params | None = None) -> Params:
        """One policy-gradient step per task; see :meth:`agents.base.Agent.adapt`.

        Runs with autograd enabled even under ``torch.no_grad`` (the step needs a gradient), but
        builds no graph back to the meta-parameters and returns detached parameters.
        """
        episodes = learning_episodes(episodes, self.device)
        start = inner_start(self.policy, params, episodes.num_tasks)
        advantages = self._advantages(episodes)
        return detach_params(self._inner_step(start, episodes, advantages, create_graph=False))

    @torch.enable_grad()
    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """One TRPO step on the meta-parameters; see :meth:`agents.base.Agent.meta_update`.

        Returns:
            ``losses/surrogate_before``, ``losses/surrogate_after``, ``losses/kl`` (mean KL of the
            accepted update, 0 if rejected), ``losses/grad_norm``, ``losses/line_search_steps``,
            ``losses/line_search_accepted``.
        """
        rollouts = self._prepare(batch)
        meta = self.policy.meta_parameters()
        loss, kl, old_policy = self._surrogate_here(rollouts, meta)
        grad = flatten_params(gradient(loss, meta, retain_graph=True))
        hvp = hessian_vector_product(kl, tuple(meta.values()), damping=self.config.cg_damping)
        direction = conjugate_gradient(hvp, grad, iterations=self.config.cg_iters)
        # Largest step along the direction whose quadratic KL model equals max_kl.
        step = direction * torch.sqrt(2.0 * self.config.max_kl / (direction @ hvp(direction)))

        def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
            candidate_params = leaves(unflatten_params(candidate, meta))
            new_policy = self._adapted_policy(rollouts, candidate_params, create_graph=False)
            new_loss, new_kl = self._surrogate_and_kl(rollouts, new_policy, old_policy)
            return new_loss.item(), new_kl.item()

        result = backtracking_line_search(
            evaluate,
            start=flatten_params(meta).detach(),
            full_step=-step,
            loss_before=loss.item(),
            max_kl=self.config.max_kl,
            max_steps=self.config.ls_max_steps,
            backtrack_ratio=self.config.ls_backtrack_ratio,
        )
        with torch.no_grad():
            for name, value in unflatten_params(result.params, meta).items():
                meta[name].copy_(value)
        return {
            "losses/surrogate_before": loss.item(),
            "losses/surrogate_after": result.loss,
            "losses/kl": result.kl,
            "losses/grad_norm": grad.norm().item(),
            "losses/line_search_steps": float(result.steps),
            "losses/line_search_accepted": float(result.accepted),
        }

    @torch.enable_grad()
    def meta_gradient(self, batch: MetaBatch) -> Params:
        """Gradient of the post-adaptation surrogate wrt the meta-parameters, at their values.

        This is the vector TRPO preconditions; it is exposed to compare second- and first-order
        meta-gradients and to check them against finite differences.
        """
        meta = self.policy.meta_parameters()
        loss, _, _ = self._surrogate_here(self._prepare(batch), meta)
        return gradient(loss, meta)

    def _prepare(self, batch: MetaBatch) -> _Rollouts:
        """Move a meta-batch to the device, validate it and compute its advantages."""
        check_meta_batch(batch, self.num_inner_steps)
        train = [learning_episodes(e, self.device) for e in batch.train]
        valid = learning_episodes(batch.valid, self.device)
        return _Rollouts(
            train=[(e, self._advantages(e)) for e in train],
            valid=valid,
            valid_advantages=self._advantages(valid),
        )

    def _advantages(self, episodes: Episodes) -> torch.Tensor:
        return compute_advantages(episodes, self.config.gamma, self.config.gae_lambda)

    def _inner_step(
        self, params: Params, episodes: Episodes, advantages: torch.Tensor, create_graph: bool
    ) -> Params:
        """``params - inner_lr * grad(loss)`` for every task at once.

        ``create_graph`` keeps the gradient differentiable, so that the outer gradient sees the
        inner step's curvature (second-order MAML). Without it the gradient is a constant and
        the adapted parameters depend on ``params`` through the identity only (first order).
        """
        distribution = self.policy.batched_distribution(episodes.observations, params)
        # Summing per-task losses gives each task's parameters the gradient of its own loss,
        # at a scale independent of the number of tasks.
        loss = policy_gradient_loss(distribution, episodes, advantages).sum()
        grads = gradient(loss, params, create_graph=create_graph)
        return {name: p - self.config.inner_lr * grads[name] for name, p in params.items()}

    def _adapted_policy(self, rollouts: _Rollouts, meta: Params, create_graph: bool) -> Normal:
        """The adapted policies' distributions on the validation observations.

        Adaptation is recomputed from ``meta`` through every inner step on the stored train
        episodes, which is what makes the surrogate a function of the meta-parameters.
        """
        params = expand_params(meta, rollouts.valid.num_tasks)
        for episodes, advantages in rollouts.train:
            params = self._inner_step(params, episodes, advantages, create_graph)
        return self.policy.batched_distribution(rollouts.valid.observations, params)

    def _surrogate_and_kl(
        self, rollouts: _Rollouts, new_policy: Normal, old_policy: Normal
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TRPO's importance-weighted surrogate loss and mean KL(old || new), task-averaged."""
        valid = rollouts.valid
        log_ratio = new_policy.log_prob(valid.actions) - old_policy.log_prob(valid.actions)
        ratio = log_ratio.sum(dim=-1).exp()
        loss = -task_mean(ratio * rollouts.valid_advantages, valid.masks).mean()
        kl = task_mean(kl_divergence(old_policy, new_policy).sum(dim=-1), valid.masks).mean()
        return loss, kl

    def _surrogate_here(
        self, rollouts: _Rollouts, meta: Params
    ) -> tuple[torch.Tensor, torch.Tensor, Normal]:
        """Surrogate and KL at ``meta`` itself, with graphs, and the (detached) old policy.

        The old policy is the adapted policy at the current meta-parameters, so the ratio is 1
        and the KL 0 here, while their derivatives are those of the trust-region problem.
        """
        policy = self._adapted_policy(rollouts, meta, create_graph=not self.config.first_order)
        old_policy = Normal(policy.loc.detach(), policy.scale.detach())
        loss, kl = self._surrogate_and_kl(rollouts, policy, old_policy)
        return loss, kl, old_policy
