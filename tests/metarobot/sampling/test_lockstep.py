"""The lockstep loop, on the in-process backend: what it records, and how it stays exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import LocalSampler, NonFiniteParametersError, Sampler, episode_seeds
from tests.metarobot.sampling.tiny import (
    BOUND,
    FIELDS,
    HORIZON,
    TASKS,
    TinyEnv,
    assert_identical,
    rows,
    task_params,
    tiny_task,
)


def test_shapes_dtypes_and_infos(local: Sampler, policy: GaussianMLPPolicy) -> None:
    episodes = local.sample(TASKS, task_params(policy, 4), episodes_per_task=3, seed=0)
    n, e, t = 4, 3, HORIZON
    assert episodes.observations.shape == (n, e, t, 4)
    assert episodes.actions.shape == (n, e, t, 2)
    for name in ("rewards", "masks", "log_probs"):
        assert getattr(episodes, name).shape == (n, e, t)
    assert episodes.unstable.shape == (n, e) and episodes.unstable.dtype == torch.bool
    for name in FIELDS[:-1]:
        assert getattr(episodes, name).dtype == torch.float32
    # Numeric scalars only (bools become floats); "unstable" has its own field.
    assert list(episodes.infos) == ["applied_0", "applied_1", "late", "reward_dist", "success"]
    for value in episodes.infos.values():
        assert value.shape == (n, e, t) and value.dtype == torch.float32
    assert set(episodes.infos["success"].unique().tolist()) <= {0.0, 1.0}
    assert local.last_stats is not None
    assert local.last_stats.env_steps == int(episodes.masks.sum())


def test_episodes_replay_in_a_fresh_env(local: Sampler, policy: GaussianMLPPolicy) -> None:
    """Masks end at termination or the horizon, padding is zero, and each stored episode is
    what the env gives for its seed and the clipped stored actions."""
    episodes = local.sample(TASKS, task_params(policy, 4), episodes_per_task=3, seed=7)
    seeds = episode_seeds(7, 4, 3)
    lengths = []
    for n, task in enumerate(TASKS):
        for e in range(3):
            env = TinyEnv()
            env.set_task(task)
            obs, _ = env.reset(seed=int(seeds[n, e]))
            length = min(env.length, HORIZON)
            lengths.append(length)
            mask = episodes.masks[n, e]
            assert mask[:length].eq(1).all() and mask[length:].eq(0).all()
            for t in range(length):
                assert torch.equal(episodes.observations[n, e, t], torch.tensor(obs).float())
                raw = episodes.actions[n, e, t].numpy()
                obs, reward, *_ = env.step(np.clip(raw, -BOUND, BOUND))
                assert episodes.rewards[n, e, t].item() == np.float32(reward)
            pad = slice(length, None)
            for name in ("observations", "actions", "rewards", "log_probs"):
                assert getattr(episodes, name)[n, e, pad].eq(0).all(), name
            for key, value in episodes.infos.items():
                assert value[n, e, pad].eq(0).all(), key
    assert min(lengths) < HORIZON == max(lengths)  # both ways of ending are exercised
    late = episodes.infos["late"]
    assert late[..., :3].eq(0).all() and torch.equal(late[..., 3:], episodes.masks[..., 3:])


def test_actions_clipped_for_env_but_stored_raw(local: Sampler, policy: GaussianMLPPolicy) -> None:
    episodes = local.sample(TASKS, task_params(policy, 4), episodes_per_task=4, seed=1)
    real = episodes.masks > 0
    raw = episodes.actions[real]
    assert raw.abs().max() > BOUND  # the policy's std makes many actions leave the bounds
    applied = torch.stack([episodes.infos["applied_0"], episodes.infos["applied_1"]], dim=-1)
    assert torch.equal(applied[real], raw.clamp(-BOUND, BOUND))


def test_log_probs_are_the_policys(local: Sampler, policy: GaussianMLPPolicy) -> None:
    params = task_params(policy, 4)
    episodes = local.sample(TASKS, params, episodes_per_task=3, seed=2)
    with torch.no_grad():
        dist = policy.batched_distribution(episodes.observations, params)
        expected = dist.log_prob(episodes.actions).sum(-1) * episodes.masks
    torch.testing.assert_close(episodes.log_probs, expected, rtol=1e-5, atol=1e-5)


def test_same_seed_same_episodes_other_seed_others(
    local: Sampler, policy: GaussianMLPPolicy
) -> None:
    params = task_params(policy, 4)
    first = local.sample(TASKS, params, episodes_per_task=2, seed=11)
    local.sample(TASKS[:2], params=task_params(policy, 2), episodes_per_task=5, seed=3)
    assert_identical(first, local.sample(TASKS, params, episodes_per_task=2, seed=11))
    other = local.sample(TASKS, params, episodes_per_task=2, seed=12)
    assert not torch.equal(first.observations[:, :, 0], other.observations[:, :, 0])
    assert not torch.equal(first.actions[:, :, 0], other.actions[:, :, 0])
    # Resets and action noise depend only on the seed and the episode's position.
    alone = local.sample(TASKS[:1], rows(params, 0, 1), episodes_per_task=2, seed=11)
    for name in FIELDS:
        assert torch.equal(getattr(alone, name)[0], getattr(first, name)[0]), name


def test_slices_with_their_offsets_equal_the_whole_batch() -> None:
    """What lets the Ray backend sample a batch in pieces, and re-sample one piece alone.

    Layers of 50 units and 3 episodes put most tasks' rows at offsets that are not multiples
    of 64 bytes, where the matrix kernels round differently unless the slice is laid out as in
    the whole batch."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(4, 2, hidden_sizes=(50, 50))
    tasks = [tiny_task(i, 0.1 * i) for i in range(19)]
    params = task_params(policy, len(tasks))
    with LocalSampler(TinyEnv, policy) as sampler:
        whole = sampler.sample(tasks, params, episodes_per_task=3, seed=21)
        for lo, hi in [(0, 1), (1, 2), (3, 7), (5, 19), (17, 19)]:
            piece = sampler.sample(tasks[lo:hi], rows(params, lo, hi), 3, seed=21, first_task=lo)
            for name in FIELDS:
                assert torch.equal(getattr(piece, name), getattr(whole, name)[lo:hi]), name


def test_forward_pass_is_single_threaded_and_restores_threads() -> None:
    """With two threads, one task alone (64-unit layers, 5 rows) takes another matmul split
    than the same task in a batch, and its actions differ in the last bits; one thread agrees."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(4, 2, hidden_sizes=(64, 64))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with LocalSampler(TinyEnv, policy) as sampler:
            params = task_params(policy, 4)
            whole = sampler.sample(TASKS, params, episodes_per_task=5, seed=8)
            alone = sampler.sample(TASKS[3:], rows(params, 3, 4), 5, seed=8, first_task=3)
        assert torch.equal(alone.actions[0], whole.actions[3])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_non_finite_parameters_are_refused(local: Sampler, policy: GaussianMLPPolicy) -> None:
    params = task_params(policy, 4)
    params["log_std"] = params["log_std"].clone()
    params["log_std"][2, 0] = float("nan")
    with pytest.raises(NonFiniteParametersError, match=r"params\['log_std'\].*tasks \[2\]"):
        local.sample(TASKS, params, episodes_per_task=1, seed=0)


def test_unstable_episodes_are_flagged_and_cut(local: Sampler, policy: GaussianMLPPolicy) -> None:
    tasks = [tiny_task(0, 1.0, unstable_at=2), TASKS[1]]
    episodes = local.sample(tasks, task_params(policy, 2), episodes_per_task=3, seed=4)
    assert episodes.unstable[0].all() and not episodes.unstable[1].any()
    assert episodes.masks[0, :, :2].eq(1).all() and episodes.masks[0, :, 2:].eq(0).all()
    assert episodes.rewards[0, :, 1].eq(0).all()  # the unstable step itself is real but empty
