import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import metarobot.run.training as training
from agents import AGENTS, Reptile, ReptileConfig, make_agent
from agents.common import clipped_surrogate_loss
from metarobot.agent import Adaptation, MetaBatch
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params
from metarobot.returns import compute_advantages
from tests.agents.test_maml import (
    N,
    linear_policy_gradient,
    sample_episodes,
    sample_meta_batch,
)
from tests.metarobot.run.test_training import TINY


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` after ``torch.save`` and ``torch.load``, as a checkpoint would carry it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_outer_step_equals_reptile_formula() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(), init_std=0.8).double()
    config = ReptileConfig(
        num_inner_steps=2,
        inner_loss="vpg",
        inner_optimizer="sgd",
        inner_lr=0.3,
        epsilon_start=0.6,
        epsilon_end=0.2,
        anneal_updates=4,
        gamma=0.9,
        gae_lambda=0.95,
    )
    agent = Reptile(policy, config)
    batch = sample_meta_batch(agent, seed=1)
    theta = {k: v.detach().clone() for k, v in policy.meta_parameters().items()}
    # phi_i: k plain gradient steps from theta, task by task, with closed-form gradients.
    phis = []
    for i in range(batch.valid.num_tasks):
        phi = dict(theta)
        for episodes in batch.train:
            task = episodes.task(i)
            advantages = compute_advantages(task, config.gamma, config.gae_lambda)
            grad = linear_policy_gradient(phi, task, advantages)
            phi = {name: value - config.inner_lr * grad[name] for name, value in phi.items()}
        phis.append(phi)

    metrics = agent.meta_update(batch)

    assert metrics["meta/epsilon"] == 0.6 and metrics["meta/updates"] == 1.0
    for name, value in policy.meta_parameters().items():
        mean_phi = torch.stack([phi[name] for phi in phis]).mean(0)
        expected = theta[name] + 0.6 * (mean_phi - theta[name])
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)


def test_meta_update_replays_the_inner_loop_the_sampler_used() -> None:
    """With epsilon 1 the meta-parameters become the mean of the adapted parameters exactly."""
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(4,))
    agent = Reptile(policy, ReptileConfig(num_inner_steps=3, inner_epochs=2, epsilon_start=1.0))
    train: list[Episodes] = []
    params: Params | None = None
    adaptation = None
    for step in range(agent.num_inner_steps):
        train.append(sample_episodes(policy, seed=step, params=params))
        adaptation = agent.adapt(train[-1], adaptation)
        params = adaptation.params
    assert params is not None
    valid = sample_episodes(policy, seed=9, params=params)
    agent.meta_update(MetaBatch(train=train, valid=valid))
    for name, value in policy.meta_parameters().items():
        torch.testing.assert_close(value.detach(), params[name].mean(0), rtol=0, atol=1e-7)


def test_epsilon_anneals_linearly_then_stays() -> None:
    config = ReptileConfig(epsilon_start=1.0, epsilon_end=0.2, anneal_updates=4)
    agent = Reptile(GaussianMLPPolicy(2, 1, hidden_sizes=(3,)), config)
    schedule = []
    for updates in range(7):
        agent.updates = updates
        schedule.append(agent.epsilon)
    assert schedule == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2])


def test_batched_adam_ppo_round_equals_separate_per_task_rounds() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(5,)).double()
    config = ReptileConfig(inner_loss="ppo", inner_optimizer="adam", inner_epochs=4, inner_lr=0.05)
    agent = Reptile(policy, config)
    episodes = sample_episodes(policy, seed=3)
    meta = snapshot(policy)
    start = {k: v.detach() + 0.1 for k, v in policy.meta_parameters().items()}
    start = {k: v.expand(episodes.num_tasks, *v.shape).clone() for k, v in start.items()}
    start_copy = {k: v.clone() for k, v in start.items()}

    adapted = agent.adapt(episodes, Adaptation(start, None)).params

    for i in range(episodes.num_tasks):
        alone_start = Adaptation({k: v[i : i + 1] for k, v in start.items()}, None)
        alone = agent.adapt(episodes.task(i), alone_start).params
        for name, value in adapted.items():
            torch.testing.assert_close(value[i], alone[name][0], rtol=1e-9, atol=1e-12)
            assert not torch.equal(value[i], start[name][i])
    # Optimizers update in place: neither the caller's parameters nor the policy may move.
    for name in start:
        assert torch.equal(start[name], start_copy[name])
    for name, value in snapshot(policy).items():
        assert torch.equal(value, meta[name])


def test_inner_adam_moments_last_over_a_tasks_rounds() -> None:
    """As in the paper, one Adam serves a task's whole inner loop: the state carries it on."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(5,)).double()
    config = ReptileConfig(num_inner_steps=2, inner_epochs=2, inner_lr=0.05)
    agent = Reptile(policy, config)
    rounds = [sample_episodes(policy, seed=11)]
    first = agent.adapt(rounds[0])
    rounds.append(sample_episodes(policy, seed=12, params=first.params))
    second = agent.adapt(rounds[1], first)

    meta = policy.meta_parameters()
    current = {k: v.detach().expand(N, *v.shape).clone().requires_grad_() for k, v in meta.items()}
    betas = (config.adam_beta1, config.adam_beta2)
    adam = torch.optim.Adam(current.values(), lr=config.inner_lr, betas=betas)
    for episodes in rounds:
        advantages = compute_advantages(episodes, config.gamma, config.gae_lambda)
        for _ in range(config.inner_epochs):
            distribution = policy.batched_distribution(episodes.observations, current)
            adam.zero_grad()
            clipped_surrogate_loss(distribution, episodes, advantages, config.clip).sum().backward()
            adam.step()
    for name, value in second.params.items():
        torch.testing.assert_close(value, current[name].detach(), rtol=0, atol=0)

    # The state is passed back, never changed: the same round again gives the same result;
    # without it, Adam starts afresh (a sign step) and ends elsewhere.
    again = agent.adapt(rounds[1], first)
    restarted = agent.adapt(rounds[1], Adaptation(first.params, None))
    for name, value in second.params.items():
        assert torch.equal(again.params[name], value)
        assert not torch.equal(restarted.params[name], value)


def test_clipped_surrogate_on_a_hand_example() -> None:
    # One task, one episode of three steps, the last one padding.
    distribution = torch.distributions.Normal(torch.zeros(1, 1, 3, 1), torch.ones(1, 1, 3, 1))
    actions = torch.tensor([0.5, -1.0, 0.0]).view(1, 1, 3, 1)
    new_log_probs = distribution.log_prob(actions).sum(-1)
    ratios = torch.tensor([1.5, 0.5, 1.0]).view(1, 1, 3)
    episodes = Episodes(
        observations=torch.zeros(1, 1, 3, 2),
        actions=actions,
        rewards=torch.zeros(1, 1, 3),
        masks=torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 3),
        log_probs=new_log_probs - ratios.log(),
        infos={},
        unstable=torch.zeros(1, 1, dtype=torch.bool),
    )
    advantages = torch.tensor([1.0, -1.0, 7.0]).view(1, 1, 3)
    loss = clipped_surrogate_loss(distribution, episodes, advantages, clip=0.2)
    # Step 1: min(1.5 * 1, 1.2 * 1) = 1.2; step 2: min(0.5 * -1, 0.8 * -1) = -0.8.
    torch.testing.assert_close(loss, torch.tensor([-(1.2 - 0.8) / 2]))


def test_state_dict_round_trip_through_a_checkpoint() -> None:
    torch.manual_seed(0)
    config = ReptileConfig(num_inner_steps=2, inner_lr=0.01, anneal_updates=10)
    agent = Reptile(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)), config)
    agent.meta_update(sample_meta_batch(agent, seed=60))
    restored = Reptile(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)))
    restored.load_state_dict(through_a_file(agent.state_dict()))

    assert restored.config == agent.config
    assert restored.updates == 1 and restored.epsilon == agent.epsilon
    for name, value in snapshot(agent.policy).items():
        assert torch.equal(snapshot(restored.policy)[name], value)


def resumed_run_matches_uninterrupted(
    tmp_path: Path, agent: str, agent_config: dict[str, Any]
) -> tuple[training.RunParts, training.RunParts]:
    """Train ``TINY`` straight through, and in two legs (stop at 3, resume to the end)."""
    config = replace(TINY, agent=agent)
    straight = training.train(config, tmp_path / "straight", agent_config, progress=False)
    straight.close()
    first_leg = replace(config, iterations=3)
    training.train(first_leg, tmp_path / "legs", agent_config, progress=False).close()
    legs = training.train(config, tmp_path / "legs", agent_config, resume=True, progress=False)
    legs.close()
    for name, value in snapshot(straight.agent.policy).items():
        torch.testing.assert_close(snapshot(legs.agent.policy)[name], value, rtol=0, atol=0)
    return straight, legs


def test_training_loop_resumes_reptile_exactly(tmp_path: Path) -> None:
    straight, legs = resumed_run_matches_uninterrupted(
        tmp_path, "reptile", {"num_inner_steps": 2, "anneal_updates": 5, "inner_lr": 0.01}
    )
    assert legs.agent.updates == straight.agent.updates == TINY.iterations


def test_registry_and_config_validation() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    assert AGENTS["reptile"] is Reptile
    agent = make_agent("reptile", policy, {"inner_loss": "vpg", "num_inner_steps": 2})
    assert agent.config == ReptileConfig(inner_loss="vpg", num_inner_steps=2)
    assert agent.num_inner_steps == 2
    with pytest.raises(ValueError, match=r"inner_loss='trpo' \(must be one of \('vpg', 'ppo'\)\)"):
        ReptileConfig(inner_loss="trpo")
    with pytest.raises(ValueError, match=r"inner_optimizer='rmsprop'.*anneal_updates=0"):
        ReptileConfig(inner_optimizer="rmsprop", anneal_updates=0)


def test_meta_update_rejects_malformed_batches() -> None:
    agent = Reptile(GaussianMLPPolicy(2, 1, hidden_sizes=(3,)), ReptileConfig(num_inner_steps=2))
    batch = sample_meta_batch(agent, seed=50)
    with pytest.raises(ValueError, match="num_inner_steps is 2"):
        agent.meta_update(batch._replace(train=batch.train[:1]))
    with pytest.raises(ValueError, match="leading task axis of size 3"):
        agent.adapt(batch.valid, Adaptation(agent.policy.meta_parameters(), None))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_agent_computes_on_its_device_with_cpu_episodes() -> None:
    config = ReptileConfig(num_inner_steps=1)
    agent = Reptile(GaussianMLPPolicy(2, 1, hidden_sizes=(8,)), config, device="cuda")
    train = sample_episodes(GaussianMLPPolicy(2, 1, hidden_sizes=(8,)), seed=70)
    assert all(p.is_cuda for p in agent.adapt(train).params.values())
    agent.meta_update(MetaBatch(train=[train], valid=train))
    assert all(p.is_cuda for p in agent.policy.parameters())
