"""A run directory committed before a refactoring still loads: config keys, checkpoints, weights."""

import hashlib
from dataclasses import replace
from pathlib import Path

import torch

from metarobot.run.build import build
from metarobot.run.checkpoints import checkpoint_path, list_checkpoints
from metarobot.run.config import load_config
from metarobot.run.directory import load_run

COMMITTED = Path(__file__).resolve().parents[3] / "benchmarks/results/HalfCheetahVel-maml-s0"

SHAPES = {
    "log_std": (6,),
    "mean.0.weight": (100, 17),
    "mean.0.bias": (100,),
    "mean.2.weight": (100, 100),
    "mean.2.bias": (100,),
    "mean.4.weight": (6, 100),
    "mean.4.bias": (6,),
}
INITIAL_CHECKSUM = "8dd80dada5bde4dc6f01cd605f004683"
"""SHA-256 (first 32 hex digits) of checkpoint 0's policy values, names sorted, as committed."""


def checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def test_a_committed_run_loads_its_first_checkpoint():
    parts, loaded = load_run(COMMITTED, checkpoint=0, backend="local", workers=1)
    try:
        state = parts.agent.policy.state_dict()
    finally:
        parts.close()
    assert loaded == 0
    assert {name: tuple(value.shape) for name, value in state.items()} == SHAPES
    assert checksum(state) == INITIAL_CHECKSUM


def test_a_committed_run_loads_its_latest_checkpoint():
    # The run goes on being trained and committed (one checkpoint kept beside the first): load
    # whichever is latest and compare with the file's own values.
    latest = max(list_checkpoints(COMMITTED / "checkpoints"))
    assert latest > 0
    saved = torch.load(checkpoint_path(COMMITTED / "checkpoints", latest), weights_only=True)
    parts, loaded = load_run(COMMITTED, backend="local", workers=1)
    try:
        state = parts.agent.policy.state_dict()
    finally:
        parts.close()
    assert loaded == latest
    assert {name: tuple(value.shape) for name, value in state.items()} == SHAPES
    assert checksum(state) == checksum(saved["agent"]["policy"]) != INITIAL_CHECKSUM


def test_a_committed_run_rebuilds_its_initial_weights():
    config, agent_table = load_config(COMMITTED / "config.toml")
    parts = build(replace(config, backend="local", workers=1), agent_table)
    try:
        assert checksum(parts.agent.policy.state_dict()) == INITIAL_CHECKSUM
    finally:
        parts.close()
