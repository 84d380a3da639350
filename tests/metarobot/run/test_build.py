"""The run layer takes a config as a user writes it, family defaults and ``auto`` unresolved,
and gives every env it makes the run's env options."""

from pathlib import Path

import numpy as np
import pytest

from agents import MAMLConfig
from envs.base import MetaEnv
from metarobot.agent import Agent
from metarobot.run.build import build, resolve, sampler_env_fn
from metarobot.run.config import RunConfig, load_config, save_config
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


def ends_when_unhealthy(env: MetaEnv) -> bool:
    """Whether an Ant's episode ends once its torso is above the healthy range (z > 1)."""
    env.reset(seed=0)
    env.data.qpos[2] = 1.5
    terminated = env.step(np.zeros(env.action_space.shape))[2]
    env.close()
    return bool(terminated)


def test_env_options_reach_every_env_a_run_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(Agent, "use_environments", lambda *args: calls.append(args))
    options = {"terminate_when_unhealthy": False}
    parts = build(RunConfig(family="AntVel", agent="maml", env_options=options))
    try:
        ((_, agent_env_fn, _, _),) = calls
        assert parts.config.env_options == options
        assert not ends_when_unhealthy(agent_env_fn())
        assert not ends_when_unhealthy(sampler_env_fn("AntVel", 200, options)())
        assert ends_when_unhealthy(sampler_env_fn("AntVel", 200)())
    finally:
        parts.close()


def test_env_options_round_trip_and_stay_out_of_older_configs(tmp_path: Path) -> None:
    with_options = RunConfig(family="AntVel", env_options={"terminate_when_unhealthy": False})
    save_config(tmp_path / "a.toml", with_options, MAMLConfig())
    assert load_config(tmp_path / "a.toml")[0] == with_options
    save_config(tmp_path / "b.toml", RunConfig(family="AntVel"), MAMLConfig())
    assert "env_options" not in (tmp_path / "b.toml").read_text()


def test_bad_env_options_are_named() -> None:
    with pytest.raises(ValueError, match=r"env_options=\{'horizon': 5\} \(may not set \["):
        RunConfig(env_options={"horizon": 5})
    with pytest.raises(ValueError, match=r"env_options=\{'x': \[1\]\} \(must be a table of"):
        RunConfig.from_mapping({"env_options": {"x": [1]}})
    with pytest.raises(ValueError, match=r"env_options \{'bogus': 1\} do not fit AntVel: .*bogus"):
        build(RunConfig(family="AntVel", env_options={"bogus": 1}))
