"""LEO latent policy: infer a task latent from rollouts, adapt it by gradient steps, decode.

Reads top to bottom: the config, the two regularizers (KL to the prior, decoder orthogonality),
the encoder/decoder module, and the agent: inference (encoder -> latent -> latent gradient steps
-> decoded output layer -> optional fine-tuning), shared by :meth:`LEO.adapt` and the
differentiable outer loss, and the PPO/Adam meta-update on top of it. The algorithm, its
equations and how it departs from the original few-shot classifier are in ``docs/leo.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from agents.common import (
    check_meta_batch,
    check_task_axis,
    clipped_surrogate_loss,
    gradient,
    learning_episodes,
    leaves,
)
from metarobot.agent import Adaptation, Agent, MetaBatch, check_config
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, detach_params, expand_params
from metarobot.returns import compute_advantages, zero_padding


@dataclass(frozen=True)
class LEOConfig:
    """LEO hyperparameters.

    Defaults are those of the LEO paper's released configuration (latent size, inner and
    fine-tuning steps and learning rates, regularizer weights, outer learning rate) where they
    have an RL counterpart, and PPO's for the outer surrogate (clipping, epochs, gradient norm).
    """

    latent_dim: int = 64
    """Size of the task latent ``z`` (LEO: 64)."""
    encoder_hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the per-transition MLP applied to ``(s, a, r, s')`` before mean pooling."""
    latent_steps: int = 5
    """Gradient steps on ``z`` with the policy-gradient loss on the adaptation rollouts (LEO: 5)."""
    inner_lr_init: float = 1.0
    """Initial step size of the latent steps (LEO: 1); learned, stored as its logarithm."""
    per_dim_inner_lr: bool = True
    """One learned latent step size per latent dimension (LEO), else a single scalar."""
    finetune_steps: int = 5
    """Gradient steps on the decoded output layer after the latent steps (LEO: 5; 0 disables)."""
    finetune_lr_init: float = 1e-3
    """Initial step size of fine-tuning (LEO: 0.001); learned, stored as its logarithm."""
    sample_latent: bool = True
    """Meta-train on ``z`` sampled from the encoder's Gaussian (LEO); adaptation uses its mean."""
    kl_weight: float = 1e-3
    """Weight of ``KL(q(z | D) || N(0, I))`` in the outer loss (LEO: 0.001)."""
    orthogonality_weight: float = 1e-3
    """Weight of the decoder orthogonality penalty in the outer loss (LEO: 0.001)."""
    outer_lr: float = 1e-4
    """Adam step size of the outer loop (LEO: 0.0001)."""
    outer_epochs: int = 5
    """Full-batch Adam steps on the PPO surrogate per meta-update (same validation episodes)."""
    clip: float = 0.2
    """PPO's clipping range of the probability ratio in the outer surrogate."""
    max_grad_norm: float = 0.5
    """Outer gradients are rescaled to at most this norm (PPO's 0.5)."""
    gamma: float = 0.99
    """Discount factor of returns and advantages."""
    gae_lambda: float = 1.0
    """GAE lambda of the inner and outer advantages (1: return minus the linear baseline)."""

    def __post_init__(self) -> None:
        # TOML has no tuples: a config read back from a run directory holds a list here.
        object.__setattr__(self, "encoder_hidden_sizes", tuple(self.encoder_hidden_sizes))
        check_config(
            self,
            {
                "latent_dim": (self.latent_dim >= 1, ">= 1"),
                "encoder_hidden_sizes": (
                    len(self.encoder_hidden_sizes) >= 1
                    and all(h >= 1 for h in self.encoder_hidden_sizes),
                    "one or more positive widths",
                ),
                "latent_steps": (self.latent_steps >= 0, ">= 0"),
                "inner_lr_init": (self.inner_lr_init > 0, "> 0"),
                "finetune_steps": (self.finetune_steps >= 0, ">= 0"),
                "finetune_lr_init": (self.finetune_lr_init > 0, "> 0"),
                "kl_weight": (self.kl_weight >= 0, ">= 0"),
                "orthogonality_weight": (self.orthogonality_weight >= 0, ">= 0"),
                "outer_lr": (self.outer_lr > 0, "> 0"),
                "outer_epochs": (self.outer_epochs >= 1, ">= 1"),
                "clip": (self.clip > 0, "> 0"),
                "max_grad_norm": (self.max_grad_norm > 0, "> 0"),
                "gamma": (0 <= self.gamma <= 1, "in [0, 1]"),
                "gae_lambda": (0 <= self.gae_lambda <= 1, "in [0, 1]"),
            },
        )


def kl_to_standard_normal(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(log_std)^2) || N(0, I))`` per row, summed over the last axis.

    The closed form, ``0.5 * sum(sigma^2 + mu^2 - 1 - 2 log sigma)``: exact and noise-free where
    LEO's code uses a one-sample estimate.
    """
    return 0.5 * (torch.exp(2 * log_std) + mean.square() - 1.0 - 2 * log_std).sum(dim=-1)


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """LEO's decoder regularizer: mean squared distance of the rows' correlation matrix to ``I``.

    Rows are the directions each latent dimension decodes to (``weight`` is ``[latent, out]``,
    i.e. the transpose of ``nn.Linear.weight``). Pushing them towards orthogonality keeps
    latent dimensions from decoding to the same change of the policy.
    """
    norms = weight.norm(dim=1, keepdim=True) + 1e-32
    correlation = (weight @ weight.T) / (norms @ norms.T)
    identity = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return (correlation - identity).square().mean()


def transitions(episodes: Episodes) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-transition features ``(s, a, r, s')`` ``[N, E, T - 1, F]`` and their masks.

    ``Episodes`` has no observation after an episode's last step, so the last step of each
    episode (whose ``s'`` is unknown) is left out; padding is masked as everywhere else.
    """
    obs, masks = episodes.observations, episodes.masks
    features = torch.cat(
        [
            obs[:, :, :-1],
            episodes.actions[:, :, :-1],
            episodes.rewards[:, :, :-1, None],
            obs[:, :, 1:],
        ],
        dim=-1,
    )
    return features, masks[:, :, :-1] * masks[:, :, 1:]


class HeadQuadratic(NamedTuple):
    """The inner policy-gradient loss as a quadratic form in the policy's output layer.

    With the hidden layers and the standard deviation held fixed, as LEO's inner loop holds them,
    the mean action ``mu_t = x_t Theta`` is linear in ``Theta = [W^T; b]`` (``x_t = [h_t, 1]``, the
    last hidden activations and a one), so ``policy_gradient_loss``, the advantage-weighted
    Gaussian log-likelihood ``sum_t w_t sum_d (a_td - mu_td)^2 / (2 sigma_d^2)`` plus terms free
    of ``Theta``, is ``sum_d (theta_d^T G theta_d - 2 theta_d^T c_d) / (2 sigma_d^2)`` with
    ``G = sum_t w_t x_t x_t^T`` and ``c_d = sum_t w_t a_td x_t``. Its gradient in ``Theta`` is
    exactly that of the per-step loss, and stays differentiable in ``G``, ``c`` and ``sigma``
    (hence in the hidden layers and the standard deviation), but an inner step costs a
    ``[F + 1, F + 1]`` product per task instead of a pass over every step of the batch; the
    per-step work is done once, in :meth:`of`.

    Attributes:
        gram: ``G``, ``[N, F + 1, F + 1]``.
        cross: ``c``, ``[N, F + 1, A]``.
    """

    gram: torch.Tensor
    cross: torch.Tensor

    @classmethod
    def of(
        cls, features: torch.Tensor, episodes: Episodes, advantages: torch.Tensor
    ) -> HeadQuadratic:
        """The form for hidden activations ``features`` ``[N, E * T, F]`` of ``episodes``.

        ``w_t`` is ``policy_gradient_loss``'s: the advantage over the task's count of valid
        steps, 0 on padding (whose NaN activations or actions are selected away).
        """
        masks = episodes.masks.flatten(1)
        valid_steps = masks.sum(1, keepdim=True).clamp_min(1)
        weights = zero_padding(advantages.flatten(1), masks) / valid_steps
        valid = masks.unsqueeze(-1)
        ones = features.new_ones(*features.shape[:-1], 1)
        inputs = zero_padding(torch.cat([features, ones], dim=-1), valid)
        actions = zero_padding(episodes.actions.flatten(1, -2), valid)
        weighted = (inputs * weights.unsqueeze(-1)).transpose(1, 2)
        return cls(weighted @ inputs, weighted @ actions)

    def loss(self, weight: torch.Tensor, bias: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """The summed per-task losses, up to terms free of the output layer.

        Args:
            weight: ``[N, A, F]`` output-layer weights (``nn.Linear``'s layout, per task).
            bias: ``[N, A]`` output-layer biases.
            log_std: ``[N, A]`` log standard deviations.
        """
        theta = torch.cat([weight.transpose(1, 2), bias.unsqueeze(1)], dim=1)
        quadratic = (theta * (self.gram @ theta - 2 * self.cross)).sum(dim=1)
        return (0.5 * quadratic * torch.exp(-2 * log_std)).sum()


class LatentModel(nn.Module):
    """The encoder, decoder and learned inner step sizes of a LEO latent policy.

    Args:
        transition_dim: Size of one ``(s, a, r, s')`` feature vector.
        head: The policy's output layer (weight, bias) that the decoder parameterizes; its values
            become the decoder's bias, so that ``z = 0`` decodes to the policy as initialized.
        config: Sizes and initial step sizes.
    """

    def __init__(
        self, transition_dim: int, head: Sequence[torch.Tensor], config: LEOConfig
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = transition_dim
        for hidden in config.encoder_hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        self.embed = nn.Sequential(*layers)
        self.posterior = nn.Linear(width, 2 * config.latent_dim)
        flat_head = torch.cat([p.detach().reshape(-1) for p in head])
        self.decoder = nn.Linear(config.latent_dim, flat_head.numel())
        with torch.no_grad():
            self.decoder.bias.copy_(flat_head)
            # Orthonormal latent directions (what the orthogonality penalty favours), scaled so
            # that a latent drawn from the prior changes the output layer by about its own norm.
            gain = flat_head.norm().item() / math.sqrt(config.latent_dim)
            nn.init.orthogonal_(self.decoder.weight, gain=gain)
        lr_size = config.latent_dim if config.per_dim_inner_lr else 1
        self.log_inner_lr = nn.Parameter(torch.full((lr_size,), math.log(config.inner_lr_init)))
        self.log_finetune_lr = nn.Parameter(torch.tensor(math.log(config.finetune_lr_init)))

    def encode(self, episodes: Episodes) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log standard deviation of ``q(z | D)`` per task, each ``[N, latent_dim]``.

        Per-transition embeddings are averaged over all valid transitions of the task, which
        makes the posterior invariant to the order of transitions and episodes.
        """
        features, masks = transitions(episodes)
        masks = masks.unsqueeze(-1)
        # Selecting rather than multiplying keeps NaN padding (unstable physics) out of the sum.
        total = zero_padding(self.embed(features), masks).sum(dim=(1, 2))
        pooled = total / masks.sum(dim=(1, 2)).clamp_min(1.0)
        mean, log_std = self.posterior(pooled).chunk(2, dim=-1)
        return mean, log_std


class _Inference(NamedTuple):
    """One pass of LEO's inner loop for every task of a batch.

    Attributes:
        params: Per-task policy parameters after the latent steps and fine-tuning.
        mean: ``[N, latent_dim]`` posterior means.
        log_std: ``[N, latent_dim]`` posterior log standard deviations.
        start: ``[N, latent_dim]`` latents the inner loop started from (mean or a sample).
        adapted: ``[N, latent_dim]`` latents after the latent steps.
    """

    params: Params
    mean: torch.Tensor
    log_std: torch.Tensor
    start: torch.Tensor
    adapted: torch.Tensor


class LEO(Agent[LEOConfig]):
    """Latent Embedding Optimization carried to policies: a latent task code, decoded to a policy.

    Rusu, Rao, Sygnowski, Vinyals, Pascanu, Osindero and Hadsell, "Meta-Learning with Latent
    Embedding Optimization", ICLR 2019 (https://arxiv.org/abs/1807.05960). The outer surrogate is
    PPO's (Schulman et al., "Proximal Policy Optimization Algorithms", 2017).

    The policy splits into shared layers (the hidden layers and the log standard deviation of
    ``policy``, meta-learned) and a conditioned part, its output layer, which is
    ``decoder(z) = W z + b`` for a task latent ``z``. Inner loop, per task and all tasks at once:
    the encoder maps the adaptation rollouts ``D`` to ``q(z | D) = N(mu, sigma^2)``; starting from
    ``mu`` (a sample of ``q`` while meta-training), ``latent_steps`` gradient steps
    ``z <- z - alpha * grad_z L_D(decoder(z))`` on the policy-gradient loss; then
    ``finetune_steps`` steps on the decoded output layer itself. Outer loop: Adam on the encoder,
    decoder, shared layers and ``log alpha``, ``log eta`` against the PPO surrogate of the
    adapted policies on the validation rollouts, plus ``kl_weight * KL(q || N(0, I))`` and
    ``orthogonality_weight`` times the decoder orthogonality penalty, everything differentiated
    through the inner loop.

    The unadapted policy, which samples the adaptation rollouts, is the one decoded from the prior
    mean ``z = 0``: ``policy``'s output layer always holds ``b`` (it is re-synchronized after
    every update and is not itself trained), so ``policy.meta_parameters()`` is a plain
    ``GaussianMLPPolicy`` parameter set that the sampler, evaluation and rendering use unchanged.
    One round of rollouts feeds the inner loop (``num_inner_steps == 1``); see :meth:`adapt` for
    later rounds.
    """

    config_class = LEOConfig

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        config: LEOConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(policy, config, device)
        last = len(self.policy.mean) - 1
        self.head_names = (f"mean.{last}.weight", f"mean.{last}.bias")
        """Names of the decoded parameters (the policy's output layer)."""
        meta = self.policy.meta_parameters()
        for name in self.head_names:
            meta[name].requires_grad_(False)  # derived from the decoder, never trained directly
        transition_dim = 2 * policy.obs_dim + policy.act_dim + 1
        head = [meta[name] for name in self.head_names]
        self.latent = LatentModel(transition_dim, head, self.config).to(
            self.device, self.policy.log_std.dtype
        )
        self.optimizer = torch.optim.Adam(list(self._trainable().values()), lr=self.config.outer_lr)
        # Latent noise comes from the agent's own generator, saved in checkpoints, so that a
        # resumed run draws what the uninterrupted one would have; its seed follows torch's. It
        # lives on the CPU so that a checkpoint loads on any device and draws the same noise.
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(2**62, ())))

    @property
    def num_inner_steps(self) -> int:
        """One round of adaptation rollouts, from which LEO infers the task."""
        return 1

    def encode(self, episodes: Episodes) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log standard deviation of ``q(z | D)``, ``[N, latent_dim]`` each."""
        return self.latent.encode(episodes.to(self.device))

    def decode(self, z: torch.Tensor) -> Params:
        """The full per-task policy parameters for latents ``z`` ``[N, latent_dim]``.

        Shared layers are the policy's own (broadcast, with their gradients); the output layer is
        the decoder's image of ``z``. Deterministic: the same ``z`` gives the same policy.
        """
        num_tasks = z.shape[0]
        meta = self.policy.meta_parameters()
        shapes = [meta[name].shape for name in self.head_names]
        flat = self.latent.decoder(z).split([math.prod(shape) for shape in shapes], dim=-1)
        head = {
            name: chunk.reshape(num_tasks, *shape)
            for name, chunk, shape in zip(self.head_names, flat, shapes, strict=True)
        }
        shared = expand_params(meta, num_tasks)
        return {name: head.get(name, value) for name, value in shared.items()}

    @torch.enable_grad()
    def adapt(
        self, episodes: Episodes, previous: Adaptation[torch.Tensor | None] | None = None
    ) -> Adaptation[torch.Tensor]:
        """LEO's inner loop; see :meth:`metarobot.agent.Agent.adapt`.

        The state is each task's latent code ``z`` ``[N, latent_dim]`` after the latent steps.
        Without one (the first step), the episodes are rollouts of the unadapted policy, what
        the encoder is trained on: they go through encoder, latent steps (from the posterior
        mean) and fine-tuning, which gives the code. Rollouts of an already adapted policy (a
        later evaluation step) continue from ``previous.params`` with fine-tuning steps only,
        keeping the code, so adaptation keeps improving the policy it was given rather than
        re-inferring the task from data the encoder never saw; with ``finetune_steps == 0`` they
        leave the parameters unchanged.

        As with ``expand_params``, the shared layers of the result are broadcast views of the
        live meta-parameters: copy them to keep them across a meta-update.
        """
        episodes = learning_episodes(episodes, self.device)
        advantages = self._advantages(episodes)
        if previous is not None:
            check_task_axis(previous.params, episodes.num_tasks)
        if previous is None or previous.state is None:
            inference = self._infer(episodes, advantages, sample=False, create_graph=False)
            return Adaptation(detach_params(inference.params), inference.adapted.detach())
        quadratic = self._head_quadratic(episodes, advantages, previous.params, False)
        params = self._finetune(leaves(previous.params), quadratic, False)
        return Adaptation(detach_params(params), previous.state)

    @torch.enable_grad()
    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """``outer_epochs`` Adam steps on the outer loss (see ``Agent.meta_update``).

        Every step recomputes the whole inner loop from the stored adaptation rollouts (encoder,
        a fresh latent sample, latent steps, fine-tuning) with graphs, so the gradient reaches
        encoder, decoder, shared layers and step sizes.

        Returns:
            The outer loss terms at the start of the update (``losses/surrogate``,
            ``losses/kl``, ``losses/orthogonality``, ``losses/total``), the mean pre-clipping
            gradient norm (``losses/grad_norm``), the mean latent step sizes
            (``meta/inner_lr``, ``meta/finetune_lr``) and the mean distance the latent steps
            moved ``z`` (``meta/latent_shift``).
        """
        rollouts = self._prepare(batch)
        trainable = list(self._trainable().values())
        first: dict[str, float] = {}
        grad_norms = []
        for _ in range(self.config.outer_epochs):
            loss, terms = self._outer_loss(*rollouts)
            first = first or terms
            self.optimizer.zero_grad()
            loss.backward()
            norm = nn.utils.clip_grad_norm_(trainable, self.config.max_grad_norm)
            grad_norms.append(norm.item())
            self.optimizer.step()
        self._sync_policy()
        return {
            **first,
            "losses/grad_norm": sum(grad_norms) / len(grad_norms),
            "meta/inner_lr": self.latent.log_inner_lr.exp().mean().item(),
            "meta/finetune_lr": self.latent.log_finetune_lr.exp().item(),
        }

    @torch.enable_grad()
    def meta_gradient(self, batch: MetaBatch) -> Params:
        """Gradient of the outer loss wrt every meta-learned tensor, by name, without stepping.

        Names are ``latent.<...>`` for the encoder, decoder and step sizes and ``policy.<...>``
        for the shared layers; exposed to check where the outer gradient flows.
        """
        loss, _ = self._outer_loss(*self._prepare(batch))
        return gradient(loss, self._trainable())

    def state_dict(self) -> dict[str, Any]:
        """Policy, config, encoder/decoder/step sizes, outer optimizer and latent-noise state."""
        return {
            **super().state_dict(),
            "latent": self.latent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.latent.load_state_dict(state["latent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self._sync_policy()

    def _trainable(self) -> dict[str, torch.Tensor]:
        """What the outer loop trains: the latent model and the policy's shared layers."""
        shared = {
            f"policy.{name}": p
            for name, p in self.policy.meta_parameters().items()
            if name not in self.head_names
        }
        return {**{f"latent.{n}": p for n, p in self.latent.named_parameters()}, **shared}

    def _sync_policy(self) -> None:
        """Write ``decoder(0)``, the decoder's bias, into the policy's output layer."""
        meta = self.policy.meta_parameters()
        with torch.no_grad():
            weight = self.latent.decoder.weight
            zero = weight.new_zeros(1, self.config.latent_dim)
            decoded = self.decode(zero)
            for name in self.head_names:
                meta[name].copy_(decoded[name][0])

    def _advantages(self, episodes: Episodes) -> torch.Tensor:
        return compute_advantages(episodes, self.config.gamma, self.config.gae_lambda)

    def _prepare(self, batch: MetaBatch) -> tuple[Episodes, torch.Tensor, Episodes, torch.Tensor]:
        """Validated rollouts on the device with their advantages, computed once per update."""
        check_meta_batch(batch, self.num_inner_steps)
        train = learning_episodes(batch.train[0], self.device)
        valid = learning_episodes(batch.valid, self.device)
        return train, self._advantages(train), valid, self._advantages(valid)

    def _inner_loss(self, quadratic: HeadQuadratic, params: Params) -> torch.Tensor:
        """Summed per-task policy-gradient losses: each task's variables get their own gradient.

        Up to terms without the output layer, which the inner loop alone changes; see
        :class:`HeadQuadratic`.
        """
        weight, bias = (params[name] for name in self.head_names)
        return quadratic.loss(weight, bias, params["log_std"])

    def _infer(
        self, episodes: Episodes, advantages: torch.Tensor, sample: bool, create_graph: bool
    ) -> _Inference:
        """Encoder, latent steps and fine-tuning on the adaptation rollouts ``episodes``.

        Args:
            episodes: Rollouts of the unadapted policy.
            advantages: Their advantages.
            sample: Start from a sample of ``q(z | D)`` rather than its mean.
            create_graph: Keep every step differentiable (the outer loss needs it).
        """
        mean, log_std = self.latent.encode(episodes)
        start = mean
        if sample:
            noise = torch.randn(mean.shape, generator=self.generator, dtype=mean.dtype)
            noise = noise.to(mean.device)
            start = mean + log_std.exp() * noise
        if not create_graph:
            start = start.detach().requires_grad_()
        z = start
        shared = expand_params(self.policy.meta_parameters(), episodes.num_tasks)
        quadratic = self._head_quadratic(episodes, advantages, shared, create_graph)
        inner_lr = self.latent.log_inner_lr.exp()
        for _ in range(self.config.latent_steps):
            loss = self._inner_loss(quadratic, self.decode(z))
            (grad,) = torch.autograd.grad(loss, (z,), create_graph=create_graph)
            z = z - inner_lr * grad
        params = self._finetune(self.decode(z), quadratic, create_graph)
        return _Inference(params, mean, log_std, start, z)

    def _head_quadratic(
        self, episodes: Episodes, advantages: torch.Tensor, params: Params, differentiable: bool
    ) -> HeadQuadratic:
        """The inner loss of ``episodes`` under ``params``' hidden layers (:class:`HeadQuadratic`).

        Only the outer loss differentiates through the hidden layers, so without
        ``differentiable`` no graph is recorded through them (it would only hold memory).
        """
        with torch.set_grad_enabled(differentiable):
            features = self.policy.batched_features(episodes.observations, params)
            return HeadQuadratic.of(features, episodes, advantages)

    def _finetune(self, params: Params, quadratic: HeadQuadratic, create_graph: bool) -> Params:
        """``finetune_steps`` policy-gradient steps on the output layer, the rest held fixed.

        ``quadratic`` is the inner loss of the episodes under ``params``' hidden layers.
        """
        head = {name: params[name] for name in self.head_names}
        finetune_lr = self.latent.log_finetune_lr.exp()
        for _ in range(self.config.finetune_steps):
            loss = self._inner_loss(quadratic, {**params, **head})
            grads = gradient(loss, head, create_graph=create_graph)
            head = {name: value - finetune_lr * grads[name] for name, value in head.items()}
        return {**params, **head}

    def _outer_loss(
        self,
        train: Episodes,
        train_advantages: torch.Tensor,
        valid: Episodes,
        valid_advantages: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """PPO surrogate of the adapted policies on ``valid``, plus the KL and orthogonality."""
        config = self.config
        inference = self._infer(
            train, train_advantages, sample=config.sample_latent, create_graph=True
        )
        distribution = self.policy.batched_distribution(valid.observations, inference.params)
        surrogate = clipped_surrogate_loss(distribution, valid, valid_advantages, config.clip)
        kl = kl_to_standard_normal(inference.mean, inference.log_std).mean()
        orthogonality = orthogonality_penalty(self.latent.decoder.weight.T)
        total = (
            surrogate.mean() + config.kl_weight * kl + config.orthogonality_weight * orthogonality
        )
        shift = (inference.adapted - inference.start).norm(dim=-1).mean()
        return total, {
            "losses/surrogate": surrogate.mean().item(),
            "losses/kl": kl.item(),
            "losses/orthogonality": orthogonality.item(),
            "losses/total": total.item(),
            "meta/latent_shift": shift.item(),
        }
