"""``scripts/ant_posture.py``: it reads an ant's posture right, and its committed tables are
about the very episodes of the committed evaluations."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarobot.episodes import Episodes
from tests.scripts import ROOT, evaluated_returns, load_script

ant_posture = load_script("ant_posture")
TABLES = sorted((ROOT / "benchmarks/results").glob("*/posture.md"))


def test_upside_down_reads_the_torso_of_an_ant_observation():
    env = gym.make("metarobot/AntFwdBack-v0")
    upright, _ = env.reset(seed=0)
    model = env.unwrapped
    qpos = model.data.qpos.copy()
    qpos[3:7] = [0.0, 1.0, 0.0, 0.0]  # half a turn about x: on its back
    model.set_state(qpos, model.data.qvel)
    flipped = model._get_obs()
    qpos[3:7] = [np.cos(np.pi / 8), 0.0, np.sin(np.pi / 8), 0.0]  # tilted 45 degrees, not over
    model.set_state(qpos, model.data.qvel)
    tilted = model._get_obs()
    env.close()
    observations = torch.as_tensor(np.stack([upright, flipped, tilted]), dtype=torch.float32)
    assert ant_posture.upside_down(observations).tolist() == [False, True, False]


def test_posture_counts_real_steps_and_each_episodes_own_last_step():
    # One task, two episodes of three steps; the first ends after two (its third is padding).
    quaternions = torch.tensor(
        [[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]],
        dtype=torch.float32,
    )
    observations = torch.zeros(1, 2, 3, 6)
    observations[0, :, :, 1:5] = quaternions
    masks = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    episodes = Episodes(
        observations=observations,
        actions=torch.zeros(1, 2, 3, 1),
        rewards=torch.tensor([[[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]]]),
        masks=masks,
        log_probs=torch.zeros(1, 2, 3),
        infos={"reward_forward": torch.tensor([[[0.5, 0.5, 0.0], [-0.5, 0.5, 0.5]]])},
        unstable=torch.zeros(1, 2, dtype=torch.bool),
    )
    row = ant_posture.posture(episodes)
    assert row["return"] == pytest.approx((3 + 12) / 2)
    assert row["task term / step"] == pytest.approx(1.5 / 5)
    assert row["steps upside down"] == pytest.approx(2 / 5)
    assert row["episodes ending upside down"] == pytest.approx(1.0)  # both end on their backs


@pytest.mark.parametrize("table", TABLES, ids=[path.parent.name for path in TABLES])
def test_committed_posture_tables_measure_the_committed_evaluations(table):
    rows = evaluated_returns(table)
    assert rows
    for evaluation, step, value in rows:
        assert value == pytest.approx(evaluation["summary"][step]["return_mean"], abs=0.05)
