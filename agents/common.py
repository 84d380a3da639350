"""Pieces shared by the policy-gradient meta-learners (MAML, Reptile, LEO).

Per-task losses return one value per task (``[N]``) rather than a scalar: summing them gives
every task's parameters exactly the gradient of its own loss, which is how all inner loops here
adapt a whole meta-batch with one batched forward and backward pass.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.distributions import Normal

from metarobot.agent import MetaBatch
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.returns import task_mean


def learning_episodes(episodes: Episodes, device: torch.device) -> Episodes:
    """``episodes`` on ``device``, with every unstable episode masked out entirely.

    An episode whose simulation diverged was cut short at a state the robot never really
    reached; its steps before the divergence already lead there. Zero masks keep it out of
    every loss, advantage and baseline fit (all of which weigh steps by their mask), while the
    episode itself stays in the batch, so that metrics still count it.
    """
    episodes = episodes.to(device)
    if not bool(episodes.unstable.any()):
        return episodes
    stable = (~episodes.unstable).to(episodes.masks.dtype).unsqueeze(-1)
    return replace(episodes, masks=episodes.masks * stable)


def leaves(params: Params) -> Params:
    """Fresh autograd leaves holding ``params``' values, for a gradient with no graph behind it."""
    return {name: p.detach().requires_grad_() for name, p in params.items()}


def gradient(
    output: torch.Tensor,
    params: Params,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> Params:
    """``d output / d params`` as a dict with ``params``' names.

    As in ``torch.autograd.grad``, the graph is kept when ``create_graph`` is set (a
    differentiable gradient needs it) unless ``retain_graph`` says otherwise.
    """
    grads = torch.autograd.grad(
        output, tuple(params.values()), retain_graph=retain_graph, create_graph=create_graph
    )
    return dict(zip(params, grads, strict=True))


def check_task_axis(params: Params, num_tasks: int) -> None:
    """Raise unless every tensor of ``params`` has a leading task axis of size ``num_tasks``."""
    leading = {name: p.shape[0] if p.dim() else None for name, p in params.items()}
    if any(size != num_tasks for size in leading.values()):
        raise ValueError(
            f"params need a leading task axis of size {num_tasks} (the episodes' tasks), "
            f"got leading sizes {leading}"
        )


def inner_start(
    policy: GaussianMLPPolicy, params: Params | None, num_tasks: int, copy: bool = False
) -> Params:
    """Per-task leaves to start an inner step from: ``params``, or the meta-parameters if None.

    Args:
        policy: The meta-policy.
        params: Per-task parameters with a leading axis ``num_tasks``, or ``None``.
        num_tasks: Tasks in the batch.
        copy: Give the leaves memory of their own, for optimizers that update in place: the
            meta-parameters are otherwise broadcast views, and ``params`` the caller's tensors.
    """
    if params is None:
        params = expand_params(policy.meta_parameters(), num_tasks)
    else:
        check_task_axis(params, num_tasks)
    return leaves({name: p.clone() for name, p in params.items()} if copy else params)


def check_meta_batch(batch: MetaBatch, num_inner_steps: int) -> None:
    """Raise unless ``batch`` has one train ``Episodes`` per inner step, all on the same tasks."""
    if len(batch.train) != num_inner_steps:
        raise ValueError(
            f"MetaBatch.train has {len(batch.train)} Episodes, but num_inner_steps is "
            f"{num_inner_steps}: one Episodes per inner step is needed"
        )
    sizes = [e.num_tasks for e in (*batch.train, batch.valid)]
    if len(set(sizes)) != 1:
        raise ValueError(f"train and valid Episodes must share one task count, got {sizes}")


def policy_gradient_loss(
    distribution: Normal, episodes: Episodes, advantages: torch.Tensor
) -> torch.Tensor:
    """REINFORCE with a baseline, ``-mean_valid_steps(log pi(a|s) * A)`` per task, ``[N]``.

    Its gradient is the vanilla policy gradient wherever it is taken, which is what an inner step
    on freshly sampled episodes needs (no importance weight, so its second derivative is that of
    ``log pi`` alone, as in MAML's derivation).
    """
    log_probs = distribution.log_prob(episodes.actions).sum(dim=-1)
    return -task_mean(log_probs * advantages, episodes.masks)


def clipped_surrogate_loss(
    distribution: Normal, episodes: Episodes, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al., 2017) per task, ``[N]``.

    The ratio is taken against the log-probabilities the sampler stored, so the loss stays a
    valid (pessimistic) estimate while the parameters drift away from those that sampled the
    episodes over several gradient steps on the same batch.
    """
    log_probs = distribution.log_prob(episodes.actions).sum(dim=-1)
    ratio = (log_probs - episodes.log_probs).exp()
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip)
    return -task_mean(torch.min(ratio * advantages, clipped * advantages), episodes.masks)
