"""``metarobot train``'s flags become a run config (``--env-option`` beside a config file's)."""

from pathlib import Path

from metarobot.cli import build_parser
from metarobot.cli.train import resolve_configs


def test_env_option_flags_are_read_as_toml_and_join_the_config_files(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[run]\nfamily = "AntVel"\nenv_options = { healthy_reward = 0.5 }\n')
    flags = ["--env-option", "terminate_when_unhealthy=false", "--env-option", "healthy_reward=1"]
    args = build_parser().parse_args(["train", "--out", "x", "--config", str(config), *flags])
    run, _ = resolve_configs(args)
    assert run.env_options == {"healthy_reward": 1, "terminate_when_unhealthy": False}


def test_keep_every_flag_reaches_the_run_config() -> None:
    args = build_parser().parse_args(["train", "--out", "x", "--keep-every", "50"])
    run, _ = resolve_configs(args)
    assert run.keep_every == 50 and run.keep_checkpoints == 3  # beside the newest, not instead
