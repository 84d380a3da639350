"""Policy-gradient MAML with a TRPO outer loop.

Reads top to bottom: the config, the inner step (a vanilla policy-gradient step per task, batched
over tasks), the post-adaptation surrogate, and the TRPO meta-update on top of it. Follows
Finn et al. (2017) and the reference implementation tristandeleu/pytorch-maml-rl.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.distributions import Normal, kl_divergence

from agents.common import (
    check_meta_batch,
    gradient,
    inner_start,
    learning_episodes,
    leaves,
    policy_gradient_loss,
)
from metarobot.agent import Adaptation, Agent, MetaBatch, check_config
from metarobot.episodes import Episodes
from metarobot.optim import (
    backtracking_line_search,
    conjugate_gradient,
    flatten_params,
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
    fisher_tasks: int = 8
    """Most tasks, evenly spaced in the meta-batch (every k-th), on which to estimate the KL
    curvature that conjugate gradient inverts; 0 means every task. TRPO's usual subsampling
    (rllab's ``subsample_factor``, OpenAI baselines' every fifth sample): 8 of the paper's 40
    tasks make each CG iteration 5x cheaper and turn the step by under 0.1 degrees
    (``benchmarks/meta_update.md``). The gradient and the line search always use every task."""
    chunk_tasks: int = 0
    """Tasks per chunk of the meta-update's computations; 0 picks 4 on the CPU, where a chunk's
    activations stay in cache (about 2x faster than the whole batch at once), and the whole
    meta-batch on a GPU. It changes only the order of float sums."""

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
                "fisher_tasks": (self.fisher_tasks >= 0, ">= 0 (0: every task)"),
                "chunk_tasks": (self.chunk_tasks >= 0, ">= 0 (0: automatic)"),
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

    @property
    def num_tasks(self) -> int:
        """Tasks in the meta-batch."""
        return self.valid.num_tasks

    def tasks(self, index: slice) -> _Rollouts:
        """The rollouts of a slice of the tasks."""
        return _Rollouts(
            train=[(e.tasks(index), a[index]) for e, a in self.train],
            valid=self.valid.tasks(index),
            valid_advantages=self.valid_advantages[index],
        )

    def chunks(self, size: int) -> list[_Rollouts]:
        """Consecutive slices of at most ``size`` tasks."""
        return [self.tasks(slice(i, i + size)) for i in range(0, self.num_tasks, size)]


class _Adaptation(NamedTuple):
    """Inner steps from the meta-parameters, one autograd graph per step.

    Each step starts from fresh leaves, so that a product with one step's Jacobian is one
    backward pass through that step alone. That Jacobian, ``I - inner_lr * Hessian`` of the
    step's loss, is symmetric: the same pass gives the product from either side, which is what
    lets Jacobian-vector and vector-Jacobian products of the whole adaptation both run in
    reverse mode.

    Attributes:
        steps: ``(inputs, outputs)`` of each inner step, inputs being leaves.
        params: Leaves holding the adapted parameters.
    """

    steps: list[tuple[Params, Params]]
    params: Params

    def jacobian_product(self, vectors: Params) -> Params:
        """``J v`` for the Jacobian ``J`` of the adapted wrt the starting parameters."""
        for inputs, outputs in self.steps:
            vectors = _pull_back(outputs, inputs, vectors)
        return vectors

    def jacobian_transpose_product(self, vectors: Params) -> Params:
        """``J^T v``: backpropagation through the steps, last first."""
        for inputs, outputs in reversed(self.steps):
            vectors = _pull_back(outputs, inputs, vectors)
        return vectors


def _pull_back(outputs: Params, inputs: Params, vectors: Params) -> Params:
    """``vectors^T (d outputs / d inputs)`` by one backward pass, keeping the graph for reuse."""
    products = torch.autograd.grad(
        tuple(outputs.values()),
        tuple(inputs.values()),
        grad_outputs=tuple(vectors[name] for name in outputs),
        retain_graph=True,
    )
    return dict(zip(inputs, products, strict=True))


def _task_sum(params: Params) -> torch.Tensor:
    """Per-task tensors summed over their task axis, as one flat vector."""
    return flatten_params({name: p.sum(dim=0) for name, p in params.items()})


class MAML(Agent[MAMLConfig]):
    """Model-Agnostic Meta-Learning for reinforcement learning, with a TRPO meta-optimizer.

    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks", ICML 2017 (https://arxiv.org/abs/1703.03400). The outer loop is TRPO (Schulman et
    al., "Trust Region Policy Optimization", ICML 2015) applied to the meta-parameters through the
    inner update, as in the paper's RL experiments.

    The inner loop is one vanilla policy-gradient step per task,
    ``theta_i = theta - inner_lr * grad L_i(theta)`` with
    ``L_i = -mean_valid_steps(log pi(a|s) * A)``, batched over tasks: the per-task losses are
    computed in one batched forward pass and summed, so each task's parameters receive exactly
    the gradient of its own loss. The outer loss is the TRPO surrogate of the adapted policies on
    the validation episodes, differentiated through the inner step (second order unless
    ``first_order``).

    Conjugate gradient needs products with the Hessian of the mean KL between old and new
    adapted policies. At the current parameters that Hessian is ``J^T F J``: ``J`` the Jacobian
    of the adapted parameters wrt the meta-parameters, ``F`` the Fisher of the adapted Gaussian
    policies. Each product is computed task chunk by task chunk as a backward pass through the
    inner step, a KL Hessian-vector product at the adapted parameters, and another backward pass
    through the inner step: the same matrix as double backpropagation through the whole graph,
    and with chunks that stay in cache the exact update takes 0.37 of that reference's time. The
    Fisher is estimated on at most ``fisher_tasks`` tasks (TRPO's usual subsampling), which
    brings the update to 0.09 of the reference on the paper's batch
    (``benchmarks/meta_update.md``).
    """

    config_class = MAMLConfig

    @property
    def num_inner_steps(self) -> int:
        """Inner updates per task (``config.num_inner_steps``)."""
        return self.config.num_inner_steps

    @torch.enable_grad()
    def adapt(
        self, episodes: Episodes, previous: Adaptation[None] | None = None
    ) -> Adaptation[None]:
        """One policy-gradient step per task; see :meth:`metarobot.agent.Agent.adapt`.

        Runs with autograd enabled even under ``torch.no_grad`` (the step needs a gradient), but
        builds no graph back to the meta-parameters and returns detached parameters. Stateless:
        a step depends only on the parameters it starts from.
        """
        episodes = learning_episodes(episodes, self.device)
        params = None if previous is None else previous.params
        start = inner_start(self.policy, params, episodes.num_tasks)
        advantages = self._advantages(episodes)
        adapted = self._inner_step(start, episodes, advantages, create_graph=False)
        return Adaptation(detach_params(adapted), None)

    @torch.enable_grad()
    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """One TRPO step on the meta-parameters; see :meth:`metarobot.agent.Agent.meta_update`.

        Returns:
            ``losses/surrogate_before``, ``losses/surrogate_after``, ``losses/kl`` (mean KL of the
            accepted update, 0 if rejected), ``losses/grad_norm``, ``losses/line_search_steps``,
            ``losses/line_search_accepted``.
        """
        rollouts = self._prepare(batch)
        meta = detach_params(self.policy.meta_parameters())
        chunks = rollouts.chunks(self._chunk_size(rollouts.num_tasks))
        loss, grad, old_policies = self._surrogate_gradient(chunks, meta, rollouts.num_tasks)
        fisher = self._fisher_product(rollouts, meta)
        direction = conjugate_gradient(fisher, grad, iterations=self.config.cg_iters)
        # Largest step along the direction whose quadratic KL model equals max_kl.
        step = direction * torch.sqrt(2.0 * self.config.max_kl / (direction @ fisher(direction)))

        def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
            candidate_params = unflatten_params(candidate, meta)
            new_loss = new_kl = torch.zeros((), device=self.device)
            for chunk, old_policy in zip(chunks, old_policies, strict=True):
                adapted = self._adaptation(candidate_params, chunk, create_graph=False).params
                with torch.no_grad():
                    new_policy = self._valid_policy(chunk, adapted)
                    new_loss = new_loss + self._surrogate(chunk, new_policy, old_policy).sum()
                    new_kl = new_kl + self._kl(chunk, new_policy, old_policy).sum()
            return (new_loss / rollouts.num_tasks).item(), (new_kl / rollouts.num_tasks).item()

        result = backtracking_line_search(
            evaluate,
            start=flatten_params(meta),
            full_step=-step,
            loss_before=loss,
            max_kl=self.config.max_kl,
            max_steps=self.config.ls_max_steps,
            backtrack_ratio=self.config.ls_backtrack_ratio,
        )
        with torch.no_grad():
            live = self.policy.meta_parameters()
            for name, value in unflatten_params(result.params, meta).items():
                live[name].copy_(value)
        return {
            "losses/surrogate_before": loss,
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
        rollouts = self._prepare(batch)
        meta = detach_params(self.policy.meta_parameters())
        chunks = rollouts.chunks(self._chunk_size(rollouts.num_tasks))
        _, grad, _ = self._surrogate_gradient(chunks, meta, rollouts.num_tasks)
        return unflatten_params(grad, meta)

    @torch.enable_grad()
    def kl_hessian_product(self, batch: MetaBatch, vector: Params) -> Params:
        """The product that conjugate gradient uses: ``d^2 KL / d meta^2`` times ``vector``.

        Exposed to check the chunked Fisher-vector product against double backpropagation.
        """
        rollouts = self._prepare(batch)
        meta = detach_params(self.policy.meta_parameters())
        product = self._fisher_product(rollouts, meta)(flatten_params(vector))
        return unflatten_params(product, meta)

    def _chunk_size(self, num_tasks: int) -> int:
        if self.config.chunk_tasks:
            return self.config.chunk_tasks
        return 4 if self.device.type == "cpu" else num_tasks

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

    def _adaptation(self, meta: Params, chunk: _Rollouts, create_graph: bool) -> _Adaptation:
        """Adapt ``meta`` to every task of ``chunk`` through the inner steps on its episodes.

        Adaptation is recomputed from ``meta`` on the stored train episodes, which is what makes
        the surrogate a function of the meta-parameters. ``create_graph`` keeps each step
        differentiable (second order) unless the config asks for first-order MAML.
        """
        params = expand_params(meta, chunk.num_tasks)
        steps = []
        for episodes, advantages in chunk.train:
            inputs = leaves(params)
            second_order = create_graph and not self.config.first_order
            params = self._inner_step(inputs, episodes, advantages, second_order)
            steps.append((inputs, params))
        return _Adaptation(steps, leaves(params))

    def _valid_policy(self, chunk: _Rollouts, params: Params) -> Normal:
        return self.policy.batched_distribution(chunk.valid.observations, params)

    def _surrogate(self, chunk: _Rollouts, new_policy: Normal, old_policy: Normal) -> torch.Tensor:
        """TRPO's importance-weighted surrogate loss of each task, ``[n]``."""
        valid = chunk.valid
        log_ratio = new_policy.log_prob(valid.actions) - old_policy.log_prob(valid.actions)
        return -task_mean(log_ratio.sum(dim=-1).exp() * chunk.valid_advantages, valid.masks)

    def _kl(self, chunk: _Rollouts, new_policy: Normal, old_policy: Normal) -> torch.Tensor:
        """Mean KL(old || new) over each task's valid steps, ``[n]``."""
        return task_mean(kl_divergence(old_policy, new_policy).sum(dim=-1), chunk.valid.masks)

    def _surrogate_gradient(
        self, chunks: list[_Rollouts], meta: Params, num_tasks: int
    ) -> tuple[float, torch.Tensor, list[Normal]]:
        """The surrogate and its meta-gradient at ``meta``, and each chunk's (old) policy.

        The old policy is the adapted policy at ``meta`` itself, so the ratio is 1 here while
        its derivatives are those of the trust-region problem.
        """
        loss = torch.zeros((), device=self.device)
        grad = torch.zeros_like(flatten_params(meta))
        old_policies = []
        for chunk in chunks:
            adaptation = self._adaptation(meta, chunk, create_graph=True)
            policy = self._valid_policy(chunk, adaptation.params)
            old_policy = Normal(policy.loc.detach(), policy.scale.detach())
            chunk_loss = self._surrogate(chunk, policy, old_policy).sum() / num_tasks
            at_adapted = gradient(chunk_loss, adaptation.params)
            grad += _task_sum(adaptation.jacobian_transpose_product(at_adapted))
            loss += chunk_loss.detach()
            old_policies.append(old_policy)
        return loss.item(), grad, old_policies

    def _fisher_product(
        self, rollouts: _Rollouts, meta: Params
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> (J^T F J) v + damping * v`` at ``meta``, on at most ``fisher_tasks`` tasks."""
        limit = self.config.fisher_tasks or rollouts.num_tasks
        fisher_tasks = rollouts.tasks(slice(None, None, math.ceil(rollouts.num_tasks / limit)))
        chunks = fisher_tasks.chunks(self._chunk_size(fisher_tasks.num_tasks))

        def product(vector: torch.Tensor) -> torch.Tensor:
            tangent = unflatten_params(vector, meta)
            result = torch.zeros_like(vector)
            for chunk in chunks:
                # Rebuilt per product: a chunk's graph is cheap to recompute while its data is
                # in cache, and keeping every chunk's graph would evict it.
                adaptation = self._adaptation(meta, chunk, create_graph=True)
                policy = self._valid_policy(chunk, adaptation.params)
                old_policy = Normal(policy.loc.detach(), policy.scale.detach())
                kl = self._kl(chunk, policy, old_policy).sum() / fisher_tasks.num_tasks
                kl_grad = gradient(kl, adaptation.params, create_graph=True)
                moved = adaptation.jacobian_product(expand_params(tangent, chunk.num_tasks))
                curvature = _pull_back(kl_grad, adaptation.params, moved)
                pulled = adaptation.jacobian_transpose_product(curvature)
                result += _task_sum(pulled)
            return result + self.config.cg_damping * vector

        return product
