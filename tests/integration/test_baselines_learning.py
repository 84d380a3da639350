"""Real learning on CPU: PPO from scratch improves on unseen PointNav2D goals within the budget.

Three adaptation steps of 20 rollouts each (6,000 env steps per task) against the return before
any update, on the same tasks with the same seeds; checked to pass with seeds 0 and 1.
"""

from pathlib import Path

import pytest

import metarobot.run.training as training
from metarobot.evaluation import evaluate_adaptation
from metarobot.run.config import RunConfig
from metarobot.run.directory import load_run

STEPS = 3


@pytest.mark.slow
def test_ppo_scratch_improves_within_the_adaptation_budget(tmp_path: Path) -> None:
    config = RunConfig(family="PointNav2D", agent="ppo-scratch", iterations=0, seed=0)
    training.train(config, tmp_path / "run", progress=False).close()
    parts, _ = load_run(tmp_path / "run")
    tasks = parts.family.sample_tasks(10, "test", seed=123)
    try:
        result = evaluate_adaptation(parts.agent, parts.sampler, tasks, STEPS, rollouts=20, seed=7)
    finally:
        parts.close()
    before, after = result.summary()[0], result.summary()[STEPS]
    margin = after["return_mean"] - before["return_mean"]
    ci = after["return_ci95"] + before["return_ci95"]
    assert margin > ci, f"after {STEPS} PPO updates: margin {margin:.2f} <= CIs {ci:.2f}"
