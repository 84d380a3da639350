"""A run directory committed before a refactoring still loads: config keys, checkpoints, weights."""

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from metarobot.run.build import build
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
CHECKSUMS = {0: "8dd80dada5bde4dc6f01cd605f004683", 40: "a0c12a7f7da756fbf0c899b23e4eac56"}
"""SHA-256 (first 32 hex digits) of the policy's values, names sorted, as committed."""


def checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


@pytest.mark.parametrize("iteration", sorted(CHECKSUMS))
def test_a_committed_run_loads_its_checkpoints(iteration):
    parts, loaded = load_run(COMMITTED, checkpoint=iteration, backend="local", workers=1)
    try:
        state = parts.agent.policy.state_dict()
    finally:
        parts.close()
    assert loaded == iteration
    assert {name: tuple(value.shape) for name, value in state.items()} == SHAPES
    assert checksum(state) == CHECKSUMS[iteration]


def test_a_committed_run_rebuilds_its_initial_weights():
    config, agent_table = load_config(COMMITTED / "config.toml")
    parts = build(replace(config, backend="local", workers=1), agent_table)
    try:
        assert checksum(parts.agent.policy.state_dict()) == CHECKSUMS[0]
    finally:
        parts.close()
