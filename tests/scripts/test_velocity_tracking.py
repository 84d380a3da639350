"""``scripts/velocity_tracking.py``: it averages velocity over real steps only, and its committed
tables are about the very episodes of the committed evaluations."""

import re

import pytest
import torch

from metarobot.episodes import Episodes
from tests.scripts import ROOT, evaluated_returns, load_script

velocity_tracking = load_script("velocity_tracking")
TABLES = sorted((ROOT / "benchmarks/results").glob("*/velocity.md"))


def test_mean_velocity_averages_each_tasks_real_steps_over_all_its_episodes():
    # Two tasks, two episodes of three steps; task 0's first episode ends after one step.
    velocities = torch.tensor(
        [[[1.0, 9.0, 9.0], [2.0, 2.0, 2.0]], [[0.5, 0.5, 0.5], [1.5, 1.5, 1.5]]]
    )
    masks = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
    episodes = Episodes(
        observations=torch.zeros(2, 2, 3, 1),
        actions=torch.zeros(2, 2, 3, 1),
        rewards=torch.zeros(2, 2, 3),
        masks=masks,
        log_probs=torch.zeros(2, 2, 3),
        infos={"x_velocity": velocities},
        unstable=torch.zeros(2, 2, dtype=torch.bool),
    )
    assert velocity_tracking.mean_velocity(episodes).tolist() == pytest.approx([7 / 4, 1.0])


@pytest.mark.parametrize("table", TABLES, ids=[path.parent.name for path in TABLES])
def test_committed_velocity_tables_measure_the_committed_evaluations(table):
    """Bit for bit on the CPU an evaluation names; on another, within that evaluation's CIs."""
    measured_on = re.search(rf"{velocity_tracking.CPU_LINE}(.+?) \(", table.read_text())
    assert measured_on
    rows = evaluated_returns(table)
    assert rows
    for evaluation, step, value in rows:
        summary = evaluation["summary"][step]
        if evaluation.get("cpu") == measured_on[1]:
            assert value == pytest.approx(summary["return_mean"], abs=0.05)
        else:
            assert abs(value - summary["return_mean"]) <= summary["return_ci95"]
