import io
from dataclasses import replace
from typing import Any

import pytest
import torch

from agents import AGENTS, MAML, MAMLConfig, make_agent
from metarobot.agent import Adaptation, Agent, MetaBatch
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.returns import compute_advantages, task_mean

N, E, T = 3, 4, 6


def sample_episodes(
    policy: GaussianMLPPolicy, seed: int, params: Params | None = None, num_tasks: int = N
) -> Episodes:
    """Episodes of a task family whose task ``i`` rewards actions close to goal ``g_i``.

    Actions are drawn from the policy (with ``params``, else the meta-parameters), so that the
    recorded log-probabilities are those of the sampling policy, as a sampler would store them.
    """
    g = torch.Generator().manual_seed(seed)
    dtype = policy.log_std.dtype
    obs = torch.randn(num_tasks, E, T, policy.obs_dim, generator=g, dtype=dtype)
    if params is None:
        params = expand_params(policy.meta_parameters(), num_tasks)
    with torch.no_grad():
        dist = policy.batched_distribution(obs, params)
        noise = torch.randn(dist.mean.shape, generator=g, dtype=dtype)
        actions = dist.mean + dist.stddev * noise
        log_probs = dist.log_prob(actions).sum(-1)
    lengths = torch.randint(2, T + 1, (num_tasks, E), generator=g)
    masks = (torch.arange(T) < lengths.unsqueeze(-1)).to(dtype)
    goals = torch.linspace(-1.0, 1.0, num_tasks, dtype=dtype).view(-1, 1, 1, 1)
    rewards = -((actions - goals) ** 2).sum(-1) - 0.1 * obs.square().sum(-1)
    return Episodes(
        observations=obs * masks.unsqueeze(-1),
        actions=actions * masks.unsqueeze(-1),
        rewards=rewards * masks,
        masks=masks,
        log_probs=log_probs * masks,
        infos={},
        unstable=torch.zeros(num_tasks, E, dtype=torch.bool),
    )


def sample_meta_batch(agent: Agent[Any], seed: int) -> MetaBatch:
    """Train episodes for each inner step with the parameters before it, then valid episodes."""
    train = []
    params = None
    adaptation = None
    for step in range(agent.num_inner_steps):
        episodes = sample_episodes(agent.policy, seed + step, params)
        train.append(episodes)
        adaptation = agent.adapt(episodes, adaptation)
        params = adaptation.params
    return MetaBatch(train=train, valid=sample_episodes(agent.policy, seed + 100, params))


def linear_policy_gradient(
    params: Params, episodes: Episodes, advantages: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Closed-form gradient of -mean_valid(log N(a; W o + b, exp(s)) * A) for one task."""
    obs, actions, masks = episodes.observations[0], episodes.actions[0], episodes.masks[0]
    std = params["log_std"].exp()
    mean = obs @ params["mean.0.weight"].T + params["mean.0.bias"]
    z = (actions - mean) / std
    weight = -(masks * advantages[0]).unsqueeze(-1) / masks.sum()  # d loss / d log p, per step
    return {
        "mean.0.weight": torch.einsum("eta,eto->ao", weight * z / std, obs),
        "mean.0.bias": (weight * z / std).sum((0, 1)),
        "log_std": (weight * (z**2 - 1)).sum((0, 1)),
    }


@pytest.mark.parametrize("start_from", ["none", "expanded_meta", "per_task"])
def test_inner_step_equals_hand_computed_policy_gradient_per_task(start_from: str) -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(), init_std=0.8).double()
    config = MAMLConfig(inner_lr=0.3, gamma=0.9, gae_lambda=0.95)
    agent = MAML(policy, config)
    episodes = sample_episodes(policy, seed=1)
    meta = {k: v.detach() for k, v in policy.meta_parameters().items()}
    starts = {
        "none": None,
        "expanded_meta": expand_params(meta, N),  # what a training loop passes on its first step
        "per_task": {k: v + 0.1 * torch.randn(N, *v.shape) for k, v in meta.items()},
    }
    start = starts[start_from]
    # Sampling code calls adapt under no_grad: the step must still happen.
    with torch.no_grad():
        adapted = agent.adapt(episodes, None if start is None else Adaptation(start, None)).params
    for i in range(N):
        task = episodes.task(i)
        advantages = compute_advantages(task, config.gamma, config.gae_lambda)
        task_start = meta if start is None else {k: v[i] for k, v in start.items()}
        grad = linear_policy_gradient(task_start, task, advantages)
        for name, value in adapted.items():
            assert not value.requires_grad
            expected = task_start[name] - config.inner_lr * grad[name]
            torch.testing.assert_close(value[i], expected, rtol=1e-10, atol=1e-12)


def test_inner_step_of_a_task_ignores_the_other_tasks() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(4,)).double()
    agent = MAML(policy)
    episodes = sample_episodes(policy, seed=2)
    other = sample_episodes(policy, seed=3)
    # Task 0 gets entirely different data; tasks 1 and 2 keep theirs.
    mixed = Episodes(
        observations=torch.cat([other.observations[:1], episodes.observations[1:]]),
        actions=torch.cat([other.actions[:1], episodes.actions[1:]]),
        rewards=torch.cat([other.rewards[:1], episodes.rewards[1:]]),
        masks=torch.cat([other.masks[:1], episodes.masks[1:]]),
        log_probs=torch.cat([other.log_probs[:1], episodes.log_probs[1:]]),
        infos={},
        unstable=episodes.unstable,
    )
    adapted, adapted_mixed = agent.adapt(episodes).params, agent.adapt(mixed).params
    for name in adapted:
        torch.testing.assert_close(adapted[name][1:], adapted_mixed[name][1:])
        assert not torch.allclose(adapted[name][0], adapted_mixed[name][0])


def test_adapt_rejects_params_without_task_axis() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    agent = MAML(policy)
    with pytest.raises(ValueError, match="leading task axis of size 3"):
        agent.adapt(sample_episodes(policy, seed=0), Adaptation(policy.meta_parameters(), None))


def post_adaptation_surrogate(agent: MAML, batch: MetaBatch, old_log_probs: torch.Tensor) -> float:
    """The MAML-TRPO surrogate at the policy's current meta-parameters, built from public parts."""
    adaptation = None
    for episodes in batch.train:
        adaptation = agent.adapt(episodes, adaptation)
    assert adaptation is not None
    params = adaptation.params
    valid = batch.valid
    log_probs = agent.policy.batched_distribution(valid.observations, params).log_prob(
        valid.actions
    )
    ratio = (log_probs.sum(-1) - old_log_probs).exp()
    advantages = compute_advantages(valid, agent.config.gamma, agent.config.gae_lambda)
    return -task_mean(ratio * advantages, valid.masks).mean().item()


def finite_difference_gradient(agent: MAML, batch: MetaBatch, eps: float = 1e-6) -> torch.Tensor:
    old_log_probs = batch.valid.log_probs  # sampled with the adapted parameters: ratio 1 here
    grads = []
    for param in agent.policy.parameters():
        flat = param.data.view(-1)
        for j in range(flat.numel()):
            value = flat[j].item()
            flat[j] = value + eps
            plus = post_adaptation_surrogate(agent, batch, old_log_probs)
            flat[j] = value - eps
            minus = post_adaptation_surrogate(agent, batch, old_log_probs)
            flat[j] = value
            grads.append((plus - minus) / (2 * eps))
    return torch.tensor(grads, dtype=torch.float64)


def flat(params: Params) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


@pytest.mark.parametrize("num_inner_steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(num_inner_steps: int) -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,)).double()
    config = MAMLConfig(inner_lr=0.5, num_inner_steps=num_inner_steps)
    second = MAML(policy, config)
    first = MAML(policy, replace(config, first_order=True))
    batch = sample_meta_batch(second, seed=10)

    numeric = finite_difference_gradient(second, batch)
    second_order = flat(second.meta_gradient(batch))
    first_order = flat(first.meta_gradient(batch))

    torch.testing.assert_close(second_order, numeric, rtol=1e-5, atol=1e-8)
    # The inner step's curvature matters: dropping it gives a clearly different gradient.
    assert (first_order - numeric).norm() > 0.05 * numeric.norm()


def test_first_order_meta_gradient_is_gradient_at_adapted_params_summed_over_tasks() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,)).double()
    agent = MAML(policy, MAMLConfig(first_order=True, inner_lr=0.5))
    batch = sample_meta_batch(agent, seed=20)
    adapted = {k: v.requires_grad_() for k, v in agent.adapt(batch.train[0]).params.items()}
    valid = batch.valid
    log_probs = policy.batched_distribution(valid.observations, adapted).log_prob(valid.actions)
    ratio = (log_probs.sum(-1) - valid.log_probs).exp()
    advantages = compute_advantages(valid, agent.config.gamma, agent.config.gae_lambda)
    loss = -task_mean(ratio * advantages, valid.masks).mean()
    grads = torch.autograd.grad(loss, tuple(adapted.values()))
    expected = torch.cat([g.sum(0).reshape(-1) for g in grads])
    torch.testing.assert_close(flat(agent.meta_gradient(batch)), expected)


def double_backprop_kl_hessian_product(agent: MAML, batch: MetaBatch, vector: Params) -> Params:
    """The textbook TRPO product: the mean KL between the adapted policy at the meta-parameters
    and itself, built through every inner step, differentiated twice (no agent code involved)."""
    config, policy = agent.config, agent.policy
    meta = policy.meta_parameters()
    params = expand_params(meta, batch.valid.num_tasks)
    for episodes in batch.train:
        advantages = compute_advantages(episodes, config.gamma, config.gae_lambda)
        dist = policy.batched_distribution(episodes.observations, params)
        log_probs = dist.log_prob(episodes.actions).sum(-1)
        loss = -task_mean(log_probs * advantages, episodes.masks).sum()
        grads = torch.autograd.grad(
            loss, tuple(params.values()), create_graph=not config.first_order
        )
        params = {
            k: p - config.inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)
        }
    new = policy.batched_distribution(batch.valid.observations, params)
    old = torch.distributions.Normal(new.loc.detach(), new.scale.detach())
    kl = task_mean(torch.distributions.kl_divergence(old, new).sum(-1), batch.valid.masks).mean()
    first = torch.autograd.grad(kl, tuple(meta.values()), create_graph=True)
    second = torch.autograd.grad(
        flat(dict(zip(meta, first, strict=True))) @ flat(vector), tuple(meta.values())
    )
    return {k: g + config.cg_damping * vector[k] for k, g in zip(meta, second, strict=True)}


@pytest.mark.parametrize("num_inner_steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("chunk_tasks", [0, 1, 2])
def test_fisher_vector_product_equals_double_backprop_hessian_product(
    num_inner_steps: int, first_order: bool, chunk_tasks: int
) -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(5, 4)).double()
    config = MAMLConfig(
        inner_lr=0.5,
        num_inner_steps=num_inner_steps,
        first_order=first_order,
        chunk_tasks=chunk_tasks,
        fisher_tasks=0,
    )
    agent = MAML(policy, config)
    batch = sample_meta_batch(agent, seed=40)
    vector = {k: torch.randn_like(p) for k, p in policy.meta_parameters().items()}
    expected = double_backprop_kl_hessian_product(agent, batch, vector)
    fast = agent.kl_hessian_product(batch, vector)
    torch.testing.assert_close(flat(fast), flat(expected), rtol=1e-9, atol=1e-12)
    # Not trivially equal: the curvature is far from the damping alone.
    assert flat(expected).norm() > 100 * config.cg_damping * flat(vector).norm()


def test_fisher_subsample_is_the_exact_product_on_evenly_spaced_tasks() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(5,)).double()
    agent = MAML(policy, MAMLConfig(inner_lr=0.5, fisher_tasks=2))  # of 3: tasks 0 and 2
    batch = sample_meta_batch(agent, seed=50)
    every_other = slice(None, None, 2)
    subset = MetaBatch([e.tasks(every_other) for e in batch.train], batch.valid.tasks(every_other))
    vector = {k: torch.randn_like(p) for k, p in policy.meta_parameters().items()}
    expected = double_backprop_kl_hessian_product(agent, subset, vector)
    torch.testing.assert_close(flat(agent.kl_hessian_product(batch, vector)), flat(expected))
    exact = double_backprop_kl_hessian_product(agent, batch, vector)
    assert (flat(expected) - flat(exact)).norm() > 1e-3 * flat(exact).norm()


def mean_kl(policy: GaussianMLPPolicy, valid: Episodes, old: Params, new: Params) -> float:
    old_dist = policy.batched_distribution(valid.observations, old)
    new_dist = policy.batched_distribution(valid.observations, new)
    kl = torch.distributions.kl_divergence(old_dist, new_dist).sum(-1)
    return task_mean(kl, valid.masks).mean().item()


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_update_lowers_surrogate_within_trust_region(first_order: bool) -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(8, 8))
    config = MAMLConfig(first_order=first_order, max_kl=0.01)
    agent = MAML(policy, config)
    batch = sample_meta_batch(agent, seed=30)
    old_params = agent.adapt(batch.train[0]).params
    before = {k: v.detach().clone() for k, v in policy.meta_parameters().items()}

    metrics = agent.meta_update(batch)

    new_params = agent.adapt(batch.train[0]).params
    kl = mean_kl(policy, batch.valid, old_params, new_params)
    surrogate = post_adaptation_surrogate(agent, batch, batch.valid.log_probs)
    assert metrics["losses/line_search_accepted"] == 1.0
    assert 1 <= metrics["losses/line_search_steps"] <= config.ls_max_steps
    assert metrics["losses/surrogate_before"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["losses/surrogate_after"] < metrics["losses/surrogate_before"]
    assert surrogate == pytest.approx(metrics["losses/surrogate_after"], rel=1e-3)
    assert 0 < kl <= config.max_kl
    assert kl == pytest.approx(metrics["losses/kl"], rel=1e-3)
    assert any(not torch.equal(v, before[k]) for k, v in policy.meta_parameters().items())


def test_meta_update_with_zero_advantages_leaves_parameters_unchanged() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    agent = MAML(policy)
    batch = sample_meta_batch(agent, seed=40)
    flat_batch = batch._replace(
        valid=replace(batch.valid, rewards=torch.zeros_like(batch.valid.rewards))
    )
    before = flat(policy.meta_parameters()).detach().clone()
    metrics = agent.meta_update(flat_batch)
    assert metrics["losses/line_search_accepted"] == 0.0
    assert torch.equal(flat(policy.meta_parameters()), before)


def test_meta_update_rejects_malformed_batches() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    agent = MAML(policy)
    batch = sample_meta_batch(agent, seed=50)
    with pytest.raises(ValueError, match="num_inner_steps is 1"):
        agent.meta_update(batch._replace(train=batch.train * 2))
    with pytest.raises(ValueError, match="task count"):
        agent.meta_update(batch._replace(valid=batch.valid.task(0)))


def test_state_dict_round_trip_through_a_checkpoint() -> None:
    torch.manual_seed(0)
    agent = MAML(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)), MAMLConfig(inner_lr=0.3))
    batch = sample_meta_batch(agent, seed=60)
    agent.meta_update(batch)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)

    restored = MAML(GaussianMLPPolicy(2, 1, hidden_sizes=(4,)))
    restored.load_state_dict(torch.load(buffer))

    assert restored.config == agent.config
    for name, value in agent.policy.state_dict().items():
        assert torch.equal(restored.policy.state_dict()[name], value)
    for name, value in agent.adapt(batch.train[0]).params.items():
        assert torch.equal(restored.adapt(batch.train[0]).params[name], value)


def test_registry_builds_agents_by_name_and_rejects_bad_input() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    assert "maml" in AGENTS
    agent = make_agent("maml", policy, {"inner_lr": 0.05, "first_order": True})
    assert isinstance(agent, MAML)
    assert agent.config == MAMLConfig(inner_lr=0.05, first_order=True)
    assert make_agent("maml", policy).config == MAMLConfig()
    with pytest.raises(ValueError, match=r"unknown agent 'mam'.*'maml'"):
        make_agent("mam", policy)
    with pytest.raises(ValueError, match=r"unknown MAMLConfig fields.*'inner_lr'"):
        make_agent("maml", policy, {"inner_rate": 0.1})
    with pytest.raises(ValueError, match="takes a MAMLConfig"):
        make_agent("maml", policy, object())


def test_config_validation_names_every_bad_field() -> None:
    with pytest.raises(ValueError, match=r"gamma=2\.0.*max_kl=0\.0"):
        MAMLConfig(gamma=2.0, max_kl=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_agent_computes_on_its_device_with_cpu_episodes() -> None:
    agent = MAML(GaussianMLPPolicy(2, 1, hidden_sizes=(8,)), device="cuda")
    assert next(agent.policy.parameters()).is_cuda
    train = sample_episodes(GaussianMLPPolicy(2, 1, hidden_sizes=(8,)), seed=70)
    params = agent.adapt(train).params
    assert all(p.is_cuda for p in params.values())
    valid = sample_episodes(GaussianMLPPolicy(2, 1, hidden_sizes=(8,)), seed=71)
    metrics = agent.meta_update(MetaBatch(train=[train], valid=valid))
    assert metrics["losses/kl"] <= agent.config.max_kl
