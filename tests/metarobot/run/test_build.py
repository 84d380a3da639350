"""The run layer takes a config as a user writes it, family defaults and ``auto`` unresolved."""

from metarobot.run.build import build, resolve
from metarobot.run.config import RunConfig


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
