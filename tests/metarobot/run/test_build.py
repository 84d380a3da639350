"""The run layer takes a config as a user writes it, family defaults and ``auto`` unresolved."""

import pytest

from metarobot.agent import Agent
from metarobot.run.build import build, resolve
from metarobot.run.config import RunConfig
from metarobot.seeding import AGENT_ENVIRONMENTS, derive_seed


def test_build_resolves_the_config_it_is_given():
    config = RunConfig(family="PointNav2D", agent="ppo-multitask", seed=1)
    assert config.horizon == 0 and config.device == "auto"
    parts = build(config, {"n_steps": 16, "batch_size": 8})
    try:
        assert parts.config == resolve(config)
        assert parts.config.horizon == 100 and parts.config.hidden_sizes == (64, 64)
        assert parts.config.device in ("cpu", "cuda")
        assert parts.agent.learner.env.get_attr("horizon") == [100]
    finally:
        parts.close()


def test_build_hands_every_agent_its_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(Agent, "use_environments", lambda *args: calls.append(args))
    parts = build(RunConfig(family="PointNav2D", agent="maml", seed=3))
    try:
        ((agent, env_fn, family, seed),) = calls
        assert agent is parts.agent and family is parts.family
        assert seed == derive_seed(3, AGENT_ENVIRONMENTS)
        env = env_fn()
        assert env.horizon == 100 and env.reset(seed=0)[1]["task"].split == "train"
        env.close()
    finally:
        parts.close()
