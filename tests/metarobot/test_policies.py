import math

import pytest
import torch

from metarobot.policies import GaussianMLPPolicy, Params, detach_params, expand_params


def perturbed(params: Params, scale: float, seed: int) -> Params:
    g = torch.Generator().manual_seed(seed)
    return {k: v.detach() + scale * torch.randn(v.shape, generator=g) for k, v in params.items()}


def test_architecture_and_initial_std() -> None:
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(5, 4), init_std=0.5)
    shapes = {k: tuple(v.shape) for k, v in policy.meta_parameters().items()}
    assert shapes == {
        "mean.0.weight": (5, 3),
        "mean.0.bias": (5,),
        "mean.2.weight": (4, 5),
        "mean.2.bias": (4,),
        "mean.4.weight": (2, 4),
        "mean.4.bias": (2,),
        "log_std": (2,),
    }
    dist = policy.distribution(torch.zeros(7, 3))
    torch.testing.assert_close(dist.scale, torch.full((7, 2), 0.5))


@pytest.mark.parametrize(("obs_dim", "act_dim"), [(0, 1), (2, -1)])
def test_rejects_non_positive_sizes(obs_dim: int, act_dim: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        GaussianMLPPolicy(obs_dim, act_dim)


def test_linear_policy_distribution_matches_closed_form() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(), init_std=0.7)
    params = perturbed(policy.meta_parameters(), 0.3, 0)
    obs = torch.randn(6, 2)
    action = torch.randn(6, 1)
    dist = policy.distribution(obs, params)
    mean = obs @ params["mean.0.weight"].T + params["mean.0.bias"]
    std = params["log_std"].exp()
    log_prob = -0.5 * ((action - mean) / std) ** 2 - params["log_std"] - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(dist.mean, mean)
    torch.testing.assert_close(dist.log_prob(action), log_prob)


def test_functional_params_leave_module_untouched_and_carry_gradients() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    params = {k: v.detach().clone().requires_grad_() for k, v in policy.meta_parameters().items()}
    params["mean.2.bias"] = params["mean.2.bias"] + 1.0
    obs = torch.randn(4, 2)
    torch.testing.assert_close(
        policy.distribution(obs, params).mean, policy.distribution(obs).mean + 1.0
    )
    policy.distribution(obs, params).log_prob(torch.zeros(4, 1)).sum().backward()
    assert all(p.grad is None for p in policy.parameters())
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k])


def test_batched_distribution_equals_per_task_distributions() -> None:
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(4,))
    tasks = [perturbed(policy.meta_parameters(), 0.5, seed) for seed in range(3)]
    batched = {k: torch.stack([t[k] for t in tasks]) for k in tasks[0]}
    obs = torch.randn(3, 5, 7, 3)  # [N, E, T, obs_dim]
    dist = policy.batched_distribution(obs, batched)
    assert dist.mean.shape == (3, 5, 7, 2)
    for i, task_params in enumerate(tasks):
        single = policy.distribution(obs[i], task_params)
        torch.testing.assert_close(dist.mean[i], single.mean)
        torch.testing.assert_close(dist.scale[i], single.scale)
    # Different parameters give different policies (the batch axis is not ignored).
    assert not torch.allclose(dist.mean[0], dist.mean[1])


def test_expand_params_shares_memory_and_keeps_gradient_path() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    meta = policy.meta_parameters()
    expanded = expand_params(meta, 4)
    for name, value in expanded.items():
        assert value.shape == (4, *meta[name].shape)
        assert value.data_ptr() == meta[name].data_ptr()
        assert value.stride(0) == 0
    dist = policy.batched_distribution(torch.randn(4, 5, 2), expanded)
    dist.log_prob(torch.randn(4, 5, 1)).sum().backward()
    assert all(p.grad is not None for p in policy.parameters())


def test_detach_params_cuts_the_graph_without_copying() -> None:
    policy = GaussianMLPPolicy(2, 1, hidden_sizes=(3,))
    adapted = {k: v * 2 for k, v in policy.meta_parameters().items()}
    detached = detach_params(adapted)
    for name, value in detached.items():
        assert not value.requires_grad
        assert value.data_ptr() == adapted[name].data_ptr()
