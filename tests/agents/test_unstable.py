"""Unstable episodes are kept out of what every meta-learner learns from."""

from dataclasses import replace

import pytest
import torch

from agents import make_agent
from agents.common import learning_episodes
from metarobot.agent import MetaBatch
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy
from tests.agents.test_maml import sample_episodes

META_LEARNERS = ["maml", "reptile", "leo"]


def scrambled(episodes: Episodes, task: int, episode: int, seed: int) -> Episodes:
    """``episodes`` with episode ``(task, episode)`` flagged unstable and its data replaced."""
    g = torch.Generator().manual_seed(seed)
    values = {}
    for name in ("observations", "actions", "rewards", "log_probs"):
        tensor = getattr(episodes, name).clone()
        tensor[task, episode] = 5 * torch.randn(tensor[task, episode].shape, generator=g)
        values[name] = tensor
    unstable = episodes.unstable.clone()
    unstable[task, episode] = True
    return replace(episodes, unstable=unstable, **values)


def make(name: str) -> object:
    torch.manual_seed(0)
    return make_agent(name, GaussianMLPPolicy(3, 2, hidden_sizes=(8,)), device="cpu")


def test_learning_episodes_zero_the_masks_of_unstable_episodes() -> None:
    episodes = scrambled(sample_episodes(GaussianMLPPolicy(3, 2), seed=0), 1, 2, seed=1)
    kept = learning_episodes(episodes, torch.device("cpu"))
    assert kept.masks[1, 2].eq(0).all()
    assert torch.equal(kept.masks[0], episodes.masks[0])
    assert torch.equal(kept.unstable, episodes.unstable)  # still counted
    assert torch.equal(kept.episode_returns()[0], episodes.episode_returns()[0])


@pytest.mark.parametrize("name", META_LEARNERS)
def test_adaptation_ignores_unstable_episodes(name: str) -> None:
    agent = make(name)
    episodes = sample_episodes(agent.policy, seed=3)
    first = agent.adapt(scrambled(episodes, 1, 2, seed=4)).params
    second = agent.adapt(scrambled(episodes, 1, 2, seed=5)).params
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize("name", ["maml", "leo"])
def test_meta_gradient_ignores_unstable_episodes(name: str) -> None:
    grads = []
    for seed in (6, 7):
        agent = make(name)
        train = sample_episodes(agent.policy, seed=3)
        valid = sample_episodes(agent.policy, seed=8)
        batch = MetaBatch(
            train=[scrambled(train, 0, 1, seed)], valid=scrambled(valid, 2, 0, seed + 10)
        )
        grads.append(agent.meta_gradient(batch))
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], rtol=0, atol=0)
