"""Evaluation protocol: shapes, fresh rollouts per step, files written, CI arithmetic."""

import json

import numpy as np
import pytest

import metarobot.run.training as training
from metarobot.evaluation import cpu_model, evaluate_adaptation, mean_ci, write_results
from metarobot.run.directory import load_run
from tests.metarobot.run.test_training import TINY


def test_mean_ci_matches_normal_approximation():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    mean, half_width = mean_ci(values)
    assert mean == 2.5
    assert half_width == pytest.approx(1.959964 * np.std(values, ddof=1) / 2, rel=1e-6)


def test_evaluate_adaptation_writes_json_csv_png(tmp_path):
    training.train(TINY, tmp_path / "run", progress=False).close()
    parts, _ = load_run(tmp_path / "run")
    tasks = parts.family.sample_tasks(4, "test", seed=0)
    try:
        result = evaluate_adaptation(parts.agent, parts.sampler, tasks, 2, rollouts=3, seed=1)
        again = evaluate_adaptation(parts.agent, parts.sampler, tasks, 2, rollouts=3, seed=1)
    finally:
        parts.close()
    assert result.returns.shape == (3, 4) and result.success.shape == (3, 4)
    np.testing.assert_array_equal(result.returns, again.returns)  # seeded
    assert not np.array_equal(result.returns[0], result.returns[1])  # fresh rollouts per step
    paths = write_results(result, tmp_path / "eval")
    assert [p.suffix for p in paths] == [".json", ".csv", ".png"]
    saved = json.loads(paths[0].read_text())
    assert len(saved["tasks"]) == 4 and saved["tasks"][0]["split"] == "test"
    assert [row["step"] for row in saved["summary"]] == [0, 1, 2]
    assert saved["cpu"] == cpu_model() != ""  # bitwise reproducible on this CPU model only
    assert paths[2].stat().st_size > 5_000
    assert "| 2 |" in result.table()


def test_bad_evaluation_arguments():
    with pytest.raises(ValueError, match="rollouts >= 1"):
        evaluate_adaptation(None, None, [], 1, rollouts=0, seed=0)  # type: ignore[arg-type]
