"""Our Gaussian MLP policy inside Stable-Baselines3's PPO, and our episodes inside its buffer.

SB3's ``ActorCriticPolicy`` with ``net_arch=dict(pi=hidden, vf=hidden)`` and tanh activations
has an actor of exactly the shape of :class:`~metarobot.policies.GaussianMLPPolicy`: the hidden
layers of ``mlp_extractor.policy_net``, then ``action_net``, and a state-independent
``log_std``; observations pass through a parameter-free ``Flatten``. Copying the actor's
tensors one to one therefore makes the two policies the same distribution, so the SB3
baselines can start PPO from any of our per-task parameters, hand the result back as our
parameters, and be evaluated by the same sampler as every meta-learner.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params


def sb3_policy_kwargs(policy: GaussianMLPPolicy) -> dict[str, Any]:
    """``policy_kwargs`` for SB3's ``MlpPolicy`` whose actor has ``policy``'s shape.

    The critic gets the same widths, as in SB3's default (separate ``pi`` and ``vf`` networks).
    """
    hidden = list(policy.hidden_sizes)
    return {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": nn.Tanh}


def _our_layers(policy: GaussianMLPPolicy) -> list[str]:
    """Names of ``policy.mean``'s linear layers, input first (``mean.0``, ``mean.2``, ...)."""
    return [f"mean.{i}" for i, layer in enumerate(policy.mean) if isinstance(layer, nn.Linear)]


def _sb3_layers(actor_critic: ActorCriticPolicy) -> list[nn.Linear]:
    """SB3's actor layers in the same order: ``policy_net``'s linear layers, then ``action_net``."""
    policy_net = actor_critic.mlp_extractor.policy_net
    hidden = [layer for layer in policy_net if isinstance(layer, nn.Linear)]
    assert isinstance(actor_critic.action_net, nn.Linear)
    return [*hidden, actor_critic.action_net]


def _paired_layers(
    actor_critic: ActorCriticPolicy, policy: GaussianMLPPolicy
) -> list[tuple[str, nn.Linear]]:
    """Each of our layer names with its SB3 counterpart; raises if the shapes differ."""
    ours = _our_layers(policy)
    theirs = _sb3_layers(actor_critic)
    shapes = [tuple(layer.weight.shape) for layer in theirs]
    expected = [tuple(policy.get_parameter(f"{name}.weight").shape) for name in ours]
    if shapes != expected:
        raise ValueError(
            f"SB3 actor layers {shapes} do not match the policy's {expected}: build the SB3 "
            f"policy with sb3_policy_kwargs(policy)"
        )
    return list(zip(ours, theirs, strict=True))


@torch.no_grad()
def load_actor(actor_critic: ActorCriticPolicy, policy: GaussianMLPPolicy, params: Params) -> None:
    """Copy one task's parameters (no task axis) into SB3's actor; the critic is untouched.

    Args:
        actor_critic: The SB3 policy to overwrite.
        policy: Our policy, for the layout of ``params``.
        params: Parameters named as ``policy.meta_parameters()``.
    """
    for name, layer in _paired_layers(actor_critic, policy):
        layer.weight.copy_(params[f"{name}.weight"])
        layer.bias.copy_(params[f"{name}.bias"])
    actor_critic.log_std.copy_(params["log_std"])


def actor_params(actor_critic: ActorCriticPolicy, policy: GaussianMLPPolicy) -> Params:
    """SB3's actor as our parameters (copies, no task axis), the inverse of :func:`load_actor`."""
    params: Params = {}
    for name, layer in _paired_layers(actor_critic, policy):
        params[f"{name}.weight"] = layer.weight.detach().clone()
        params[f"{name}.bias"] = layer.bias.detach().clone()
    params["log_std"] = actor_critic.log_std.detach().clone()
    return params


@torch.no_grad()
def rollout_buffer(
    actor_critic: ActorCriticPolicy, episodes: Episodes, gamma: float, gae_lambda: float
) -> RolloutBuffer:
    """One task's episodes as the buffer SB3's ``PPO.train`` learns from, advantages included.

    The real steps of the ``E`` episodes are laid end to end as one environment's stream with
    an episode start at each boundary, which is what SB3's ``collect_rollouts`` records with
    one environment. Values and log-probabilities are those of ``actor_critic`` now (the
    actor holds the parameters that sampled the episodes, so the log-probabilities equal the
    sampler's). The end of every episode counts as terminal: our episodes do not keep the
    observation after a time-limit truncation, so there is nothing to bootstrap from (as for
    the meta-learners, whose returns also stop at the horizon).

    Args:
        actor_critic: The SB3 policy whose actor sampled ``episodes``.
        episodes: Episodes of one task (a task axis of size 1).
        gamma: Discount factor of the GAE returns.
        gae_lambda: GAE lambda.
    """
    if episodes.num_tasks != 1:
        raise ValueError(f"expected the episodes of one task, got {episodes.num_tasks} tasks")
    real = episodes.masks[0].bool()
    starts = torch.zeros_like(episodes.masks[0])
    starts[:, 0] = 1.0
    device = actor_critic.device
    observations = episodes.observations[0][real].to(device)
    actions = episodes.actions[0][real].to(device)
    values, log_probs, _ = actor_critic.evaluate_actions(observations, actions)
    buffer = RolloutBuffer(
        int(real.sum()),
        actor_critic.observation_space,
        actor_critic.action_space,
        device=device,
        gamma=gamma,
        gae_lambda=gae_lambda,
    )
    stream = zip(
        observations.cpu().numpy(),
        actions.cpu().numpy(),
        episodes.rewards[0][real].cpu().numpy(),
        starts[real].cpu().numpy(),
        values.flatten(),
        log_probs,
        strict=True,
    )
    for obs, action, reward, start, value, log_prob in stream:
        buffer.add(obs[None], action[None], reward[None], start[None], value, log_prob[None])
    buffer.compute_returns_and_advantage(last_values=torch.zeros(1), dones=np.ones(1))
    return buffer
