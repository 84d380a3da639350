"""``scripts/velocity_tracking.py``: it averages velocity over real steps only, and its committed
tables are about the very episodes of the committed evaluations."""

import json
import re

import pytest
import torch

from metarobot.episodes import Episodes
from tests.scripts import ROOT, load_script

velocity_tracking = load_script("velocity_tracking")
reproduce = load_script("reproduce")
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
    text = table.read_text()
    measured_on = re.search(rf"{velocity_tracking.CPU_LINE}(.+?) \(", text)
    assert measured_on
    evaluations = {}
    for path in table.parent.glob("*.json"):
        result = json.loads(path.read_text())
        evaluations[reproduce.evaluated_with(result)] = result
    rows = re.findall(r"^\| (\d+) \| (\d) \| (-?[\d.]+) \|", text, re.MULTILINE)
    assert rows
    for checkpoint, step, value in rows:
        evaluation = evaluations[(int(checkpoint), None)]
        summary = evaluation["summary"][int(step)]
        if evaluation.get("cpu") == measured_on[1]:
            assert float(value) == pytest.approx(summary["return_mean"], abs=0.05)
        else:
            assert abs(float(value) - summary["return_mean"]) <= summary["return_ci95"]
