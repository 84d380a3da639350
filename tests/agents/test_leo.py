import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from agents import AGENTS, LEO, LEOConfig, make_agent
from agents.common import policy_gradient_loss
from agents.leo import HeadQuadratic, kl_to_standard_normal, orthogonality_penalty
from metarobot.agent import Adaptation, MetaBatch
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, expand_params
from metarobot.returns import compute_advantages
from tests.agents.test_maml import sample_episodes, sample_meta_batch
from tests.agents.test_reptile import (
    resumed_run_matches_uninterrupted,
    snapshot,
    through_a_file,
)

HEAD = ("mean.2.weight", "mean.2.bias")
SMALL = LEOConfig(latent_dim=3, encoder_hidden_sizes=(6,), latent_steps=2, finetune_steps=1)


def make_leo(config: LEOConfig = SMALL, seed: int = 0) -> LEO:
    torch.manual_seed(seed)
    return LEO(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)).double(), config)


def agent_state(agent: LEO) -> dict[str, torch.Tensor]:
    return {
        **{f"policy.{k}": v for k, v in snapshot(agent.policy).items()},
        **{f"latent.{k}": v for k, v in snapshot(agent.latent).items()},
    }


def test_latent_inner_step_is_a_gradient_step_on_z_only() -> None:
    agent = make_leo(replace(SMALL, latent_steps=1, finetune_steps=0, inner_lr_init=0.7))
    episodes = sample_episodes(agent.policy, seed=1)
    before = agent_state(agent)

    adaptation = agent.adapt(episodes)
    adapted = adaptation.params

    mean, _ = agent.encode(episodes)
    z = mean.detach().requires_grad_()
    advantages = compute_advantages(episodes, agent.config.gamma, agent.config.gae_lambda)
    distribution = agent.policy.batched_distribution(episodes.observations, agent.decode(z))
    loss = policy_gradient_loss(distribution, episodes, advantages).sum()
    (grad,) = torch.autograd.grad(loss, z)
    inner_lr = agent.latent.log_inner_lr.exp().detach()
    torch.testing.assert_close(inner_lr, torch.full((SMALL.latent_dim,), 0.7, dtype=torch.float64))
    expected = agent.decode(z - inner_lr * grad)
    # The adaptation state is the tasks' latent codes.
    torch.testing.assert_close(adaptation.state, (z - inner_lr * grad).detach())
    meta = expand_params(agent.policy.meta_parameters(), episodes.num_tasks)
    for name, value in adapted.items():
        torch.testing.assert_close(value, expected[name].detach(), rtol=1e-9, atol=1e-12)
        # Only the decoded output layer differs from the unadapted policy.
        assert torch.equal(value, meta[name]) == (name not in HEAD)
    # Nothing meta-learned moved: adaptation lives in z.
    for name, value in agent_state(agent).items():
        assert torch.equal(value, before[name]), name


def test_gradients_reach_encoder_decoder_shared_layers_and_step_sizes() -> None:
    agent = make_leo()
    batch = sample_meta_batch(agent, seed=2)
    grads = agent.meta_gradient(batch)
    expected = {f"latent.{n}" for n, _ in agent.latent.named_parameters()} | {
        "policy.mean.0.weight",
        "policy.mean.0.bias",
        "policy.log_std",
    }
    assert set(grads) == expected
    for name, grad in grads.items():
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_kl_and_orthogonality_on_hand_examples() -> None:
    # KL(N((1, 0), diag(1, 4)) || N(0, I)) = 0.5 * [(1 + 1 - 1 - 0) + (4 + 0 - 1 - 2 ln 2)].
    kl = kl_to_standard_normal(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    torch.testing.assert_close(kl, torch.tensor([2.0 - math.log(2.0)]))
    assert kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0] * 3
    # Rows (1, 0) and (1, 1): correlation 1/sqrt(2) off the diagonal; mean of (C - I)^2 = 1/4.
    penalty = orthogonality_penalty(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(penalty, torch.tensor(0.25))
    assert orthogonality_penalty(torch.tensor([[0.0, 3.0], [-2.0, 0.0]])).item() == 0.0


def test_outer_loss_weighs_its_terms_as_configured() -> None:
    agent = make_leo(replace(SMALL, kl_weight=0.3, orthogonality_weight=2.0, outer_epochs=1))
    metrics = agent.meta_update(sample_meta_batch(agent, seed=3))
    expected = (
        metrics["losses/surrogate"]
        + 0.3 * metrics["losses/kl"]
        + 2.0 * metrics["losses/orthogonality"]
    )
    assert metrics["losses/total"] == pytest.approx(expected, rel=1e-9)
    assert metrics["losses/kl"] > 0 and metrics["losses/orthogonality"] > 0


def test_decoded_policy_is_deterministic_and_z_zero_is_the_unadapted_policy() -> None:
    agent = make_leo()
    z = torch.randn(3, SMALL.latent_dim, dtype=torch.float64)
    first, second = agent.decode(z), agent.decode(z.clone())
    obs = torch.randn(3, 5, 2, dtype=torch.float64)
    for name in first:
        assert torch.equal(first[name], second[name])
    a, b = (agent.policy.batched_distribution(obs, p) for p in (first, second))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.stddev, b.stddev)
    # The sampler's meta-parameters are the policy decoded from the prior mean, also after an
    # update has moved the decoder.
    agent.meta_update(sample_meta_batch(agent, seed=4))
    prior = agent.decode(torch.zeros(1, SMALL.latent_dim, dtype=torch.float64))
    for name, value in agent.policy.meta_parameters().items():
        torch.testing.assert_close(value.detach(), prior[name][0].detach(), rtol=0, atol=0)


def test_adapting_an_adapted_policy_fine_tunes_its_output_layer() -> None:
    agent = make_leo(replace(SMALL, finetune_lr_init=0.1))
    episodes = sample_episodes(agent.policy, seed=5)
    unadapted = expand_params({k: v.detach() for k, v in agent.policy.meta_parameters().items()}, 3)
    adaptation = agent.adapt(episodes)
    adapted = adaptation.params
    # Passing the meta-parameters explicitly (as the sampler does) means the same thing.
    for name, value in agent.adapt(episodes, Adaptation(unadapted, None)).params.items():
        assert torch.equal(value, adapted[name])

    further = agent.adapt(episodes, adaptation).params

    advantages = compute_advantages(episodes, agent.config.gamma, agent.config.gae_lambda)
    head = {name: adapted[name].clone().requires_grad_() for name in HEAD}
    distribution = agent.policy.batched_distribution(episodes.observations, {**adapted, **head})
    loss = policy_gradient_loss(distribution, episodes, advantages).sum()
    grads = torch.autograd.grad(loss, tuple(head.values()))
    finetune_lr = agent.latent.log_finetune_lr.exp().detach()
    assert finetune_lr.item() == pytest.approx(0.1)
    for name, value in further.items():
        expected = adapted[name]
        if name in HEAD:
            expected = expected - finetune_lr * grads[HEAD.index(name)]
        torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-12)
    no_finetuning = make_leo(replace(SMALL, finetune_steps=0))
    for name, value in no_finetuning.adapt(episodes, adaptation).params.items():
        assert torch.equal(value, adapted[name])


def test_head_quadratic_has_the_policy_gradient_loss_gradients_to_second_order() -> None:
    """The inner loop's closed form: same head gradient, same derivatives of it (the outer loss's
    path to the hidden layers and the standard deviation), whatever the padding holds."""
    torch.manual_seed(3)
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(5, 4)).double()
    episodes = sample_episodes(policy, seed=4)
    advantages = compute_advantages(episodes, 0.99, 1.0)
    padding = episodes.masks.unsqueeze(-1) == 0
    garbage_padded = replace(
        episodes,
        observations=episodes.observations.masked_fill(padding, 1e3),
        actions=episodes.actions.masked_fill(padding, torch.nan),
    )
    head_names = ("mean.4.weight", "mean.4.bias")
    meta = policy.meta_parameters()
    shared = {name: p for name, p in meta.items() if name not in head_names}
    params = expand_params(meta, episodes.num_tasks)
    head = {name: params[name].detach().clone().requires_grad_() for name in head_names}
    params |= head
    per_step = policy_gradient_loss(
        policy.batched_distribution(episodes.observations, params), episodes, advantages
    )
    garbage_features = policy.batched_features(garbage_padded.observations, params)
    closed_form = HeadQuadratic.of(garbage_features, garbage_padded, advantages).loss(
        *head.values(), params["log_std"]
    )
    exact = torch.autograd.grad(per_step.sum(), list(head.values()), create_graph=True)
    quadratic = torch.autograd.grad(closed_form, list(head.values()), create_graph=True)
    directions = [torch.randn_like(g) for g in exact]
    second_order = [
        torch.autograd.grad(
            sum((g * v).sum() for g, v in zip(grads, directions, strict=True)),
            list(shared.values()),
        )
        for grads in (exact, quadratic)
    ]
    for got, expected in zip(quadratic, exact, strict=True):
        assert torch.isfinite(got).all() and got.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    for got, expected in zip(*reversed(second_order), strict=True):
        assert torch.isfinite(got).all() and got.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_encoder_ignores_the_order_of_episodes_and_padding_values() -> None:
    agent = make_leo()
    episodes = sample_episodes(agent.policy, seed=6)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = Episodes(
        observations=episodes.observations[:, order],
        actions=episodes.actions[:, order],
        rewards=episodes.rewards[:, order],
        masks=episodes.masks[:, order],
        log_probs=episodes.log_probs[:, order],
        infos={},
        unstable=episodes.unstable[:, order],
    )
    nan_padding = replace(
        episodes, rewards=torch.where(episodes.masks > 0, episodes.rewards, torch.nan)
    )
    mean, log_std = agent.encode(episodes)
    for other in (shuffled, nan_padding):
        other_mean, other_log_std = agent.encode(other)
        torch.testing.assert_close(other_mean, mean)
        torch.testing.assert_close(other_log_std, log_std)


def test_meta_update_changes_what_adaptation_produces() -> None:
    agent = make_leo(replace(SMALL, outer_lr=1e-2))
    batch = sample_meta_batch(agent, seed=7)
    # Shared layers come back as broadcast views of the live parameters: keep a copy.
    before = {name: value.clone() for name, value in agent.adapt(batch.train[0]).params.items()}
    metrics = agent.meta_update(batch)
    after = agent.adapt(batch.train[0]).params
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(not torch.equal(before[name], after[name]) for name in before)


def test_state_dict_round_trip_through_a_checkpoint() -> None:
    agent = make_leo(replace(SMALL, latent_dim=2, per_dim_inner_lr=False))
    batch = sample_meta_batch(agent, seed=8)
    agent.meta_update(batch)
    restored = make_leo(agent.config, seed=1)  # other weights: all must come from the state
    restored.load_state_dict(through_a_file(agent.state_dict()))

    assert restored.config == agent.config
    for name, value in agent_state(agent).items():
        assert torch.equal(agent_state(restored)[name], value), name
    # Same optimizer moments and latent noise: the next update is identical.
    agent.meta_update(batch)
    restored.meta_update(batch)
    for name, value in agent_state(agent).items():
        assert torch.equal(agent_state(restored)[name], value), name


def test_training_loop_resumes_leo_exactly(tmp_path: Path) -> None:
    straight, legs = resumed_run_matches_uninterrupted(
        tmp_path, "leo", {"latent_dim": 2, "encoder_hidden_sizes": [4], "outer_epochs": 2}
    )
    for name, value in snapshot(straight.agent.latent).items():
        torch.testing.assert_close(snapshot(legs.agent.latent)[name], value, rtol=0, atol=0)


def test_registry_and_config_validation() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    assert AGENTS["leo"] is LEO
    agent = make_agent("leo", policy, {"latent_dim": 4, "encoder_hidden_sizes": [8, 8]})
    assert agent.config == LEOConfig(latent_dim=4, encoder_hidden_sizes=(8, 8))
    assert agent.num_inner_steps == 1
    with pytest.raises(ValueError, match=r"latent_dim=0 \(must be >= 1\).*outer_epochs=0"):
        LEOConfig(latent_dim=0, outer_epochs=0)
    with pytest.raises(ValueError, match=r"encoder_hidden_sizes=\(\)"):
        LEOConfig(encoder_hidden_sizes=())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_agent_computes_on_its_device_and_its_checkpoint_loads_on_cpu() -> None:
    agent = LEO(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)), SMALL, device="cuda")
    train = sample_episodes(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)), seed=70)
    assert all(p.is_cuda for p in agent.adapt(train).params.values())
    agent.meta_update(MetaBatch(train=[train], valid=train))
    on_cpu = LEO(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)), SMALL)
    on_cpu.load_state_dict(through_a_file(agent.state_dict()))
    for name, value in agent.adapt(train).params.items():
        torch.testing.assert_close(on_cpu.adapt(train).params[name], value.cpu())
