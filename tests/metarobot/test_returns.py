from dataclasses import replace

import numpy as np
import pytest
import torch

from metarobot.episodes import Episodes
from metarobot.returns import (
    LinearFeatureBaseline,
    compute_advantages,
    discounted_returns,
    gae,
    normalize_advantages,
    task_mean,
)

N, E, T, OBS = 3, 4, 9, 2


def ragged_masks(generator: torch.Generator) -> torch.Tensor:
    """Masks with random episode lengths in [1, T], including full-length episodes."""
    lengths = torch.randint(1, T + 1, (N, E), generator=generator)
    lengths[0, 0] = T
    return (torch.arange(T) < lengths.unsqueeze(-1)).double()


def random_episodes(seed: int, obs_scale: float = 1.0) -> Episodes:
    g = torch.Generator().manual_seed(seed)
    masks = ragged_masks(g)
    return Episodes(
        observations=obs_scale * torch.randn(N, E, T, OBS, generator=g, dtype=torch.float64),
        actions=torch.zeros(N, E, T, 1, dtype=torch.float64),
        rewards=torch.randn(N, E, T, generator=g, dtype=torch.float64) * masks,
        masks=masks,
        log_probs=torch.zeros(N, E, T, dtype=torch.float64),
        infos={},
        unstable=torch.zeros(N, E, dtype=torch.bool),
    )


def naive_returns(rewards: np.ndarray, masks: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(rewards)
    for n, e in np.ndindex(*rewards.shape[:2]):
        length = int(masks[n, e].sum())
        for t in range(length):
            out[n, e, t] = sum(gamma ** (k - t) * rewards[n, e, k] for k in range(t, length))
    return out


def naive_gae(rewards, values, masks, gamma, lam):
    out = np.zeros_like(rewards)
    for n, e in np.ndindex(*rewards.shape[:2]):
        length = int(masks[n, e].sum())
        value = [*values[n, e, :length], 0.0]
        deltas = [rewards[n, e, t] + gamma * value[t + 1] - value[t] for t in range(length)]
        for t in range(length):
            out[n, e, t] = sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, length))
    return out


def test_discounted_returns_match_naive_loop_and_ignore_padding() -> None:
    episodes = random_episodes(0)
    # Garbage in the padding (as unstable physics may leave) must not leak into any return.
    rewards = torch.where(episodes.masks > 0, episodes.rewards, float("nan"))
    got = discounted_returns(rewards, episodes.masks, 0.9)
    want = naive_returns(episodes.rewards.numpy(), episodes.masks.numpy(), 0.9)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_discounted_returns_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="masks"):
        discounted_returns(torch.zeros(2, 3, 4), torch.ones(2, 3, 5), 0.99)


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.0), (1.0, 0.5)])
def test_gae_matches_naive_loop(gamma: float, lam: float) -> None:
    episodes = random_episodes(1)
    values = torch.randn(N, E, T, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = gae(episodes.rewards, values, episodes.masks, gamma, lam)
    want = naive_gae(episodes.rewards.numpy(), values.numpy(), episodes.masks.numpy(), gamma, lam)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_gae_with_lambda_one_is_return_minus_value() -> None:
    episodes = random_episodes(3)
    values = torch.randn(N, E, T, dtype=torch.float64)
    got = gae(episodes.rewards, values, episodes.masks, 0.97, 1.0)
    want = (discounted_returns(episodes.rewards, episodes.masks, 0.97) - values) * episodes.masks
    torch.testing.assert_close(got, want)


def test_normalize_advantages_per_task_over_valid_steps() -> None:
    episodes = random_episodes(4)
    scale = torch.tensor([1.0, 10.0, 1000.0], dtype=torch.float64).view(N, 1, 1)
    advantages = (episodes.rewards * scale + scale) * episodes.masks
    normalized = normalize_advantages(advantages, episodes.masks)
    for n in range(N):
        valid = normalized[n][episodes.masks[n].bool()]
        assert abs(valid.mean().item()) < 1e-9
        assert valid.std(unbiased=False).item() == pytest.approx(1.0, rel=1e-6)
    assert normalized[episodes.masks == 0].abs().max() == 0


def test_task_mean_weighs_valid_steps_and_handles_empty_tasks() -> None:
    values = torch.arange(2 * 1 * 4, dtype=torch.float64).view(2, 1, 4)
    masks = torch.tensor([[[1.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(task_mean(values, masks), torch.tensor([1.0, 0.0]).double())


def rllab_features(obs: np.ndarray, length: int) -> np.ndarray:
    o = np.clip(obs[:length], -10, 10)
    al = np.arange(length).reshape(-1, 1) / 100.0
    return np.concatenate([o, o**2, al, al**2, al**3, np.ones((length, 1))], axis=1)


def test_linear_feature_baseline_matches_rllab_lstsq_per_task() -> None:
    # Scale 6 puts some observations beyond the [-10, 10] clip.
    episodes = random_episodes(5, obs_scale=6.0)
    gamma = 0.95
    values = LinearFeatureBaseline().fit_and_predict(episodes, gamma)
    returns = naive_returns(episodes.rewards.numpy(), episodes.masks.numpy(), gamma)
    lengths = episodes.masks.sum(-1).long().numpy()
    for n in range(N):
        feats = [
            rllab_features(episodes.observations[n, e].numpy(), lengths[n, e]) for e in range(E)
        ]
        x = np.concatenate(feats)
        y = np.concatenate([returns[n, e, : lengths[n, e]] for e in range(E)])
        ridge = np.linalg.lstsq(x.T @ x + 1e-5 * np.eye(x.shape[1]), x.T @ y, rcond=None)[0]
        for e in range(E):
            got = values[n, e, : lengths[n, e]].numpy()
            np.testing.assert_allclose(got, feats[e] @ ridge, rtol=1e-7, atol=1e-9)
    assert values[episodes.masks == 0].abs().max() == 0


def test_linear_feature_baseline_fits_tasks_independently() -> None:
    episodes = random_episodes(6)
    values = LinearFeatureBaseline().fit_and_predict(episodes, 0.99)
    alone = LinearFeatureBaseline().fit_and_predict(episodes.task(1), 0.99)
    torch.testing.assert_close(values[1:2], alone)


def test_linear_feature_baseline_survives_degenerate_features() -> None:
    # Constant observations make obs and obs^2 columns collinear with the constant: the ridge
    # term must keep the solve finite.
    episodes = random_episodes(7)
    constant = replace(episodes, observations=torch.ones_like(episodes.observations))
    values = LinearFeatureBaseline().fit_and_predict(constant, 0.99)
    assert torch.isfinite(values).all()


def test_linear_feature_baseline_raises_when_unsolvable() -> None:
    episodes = random_episodes(8)
    broken = episodes.observations.clone()
    broken[2, 0, 0, 0] = float("nan")
    bad = replace(episodes, observations=broken)
    with pytest.raises(RuntimeError, match=r"tasks \[2\]"):
        LinearFeatureBaseline().fit_and_predict(bad, 0.99)


def test_compute_advantages_keeps_dtype_and_device_and_normalizes() -> None:
    episodes = random_episodes(9)
    float_episodes = replace(
        episodes,
        observations=episodes.observations.float(),
        rewards=episodes.rewards.float(),
        masks=episodes.masks.float(),
    )
    advantages = compute_advantages(float_episodes, 0.99, 1.0)
    assert advantages.dtype == torch.float32
    torch.testing.assert_close(
        task_mean(advantages, float_episodes.masks), torch.zeros(N), atol=1e-5, rtol=0
    )
