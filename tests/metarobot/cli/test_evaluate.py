"""``metarobot evaluate --inner-lr``: a trained agent adapting with another step size."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

import metarobot.run.training as training
from metarobot.cli import main
from metarobot.report import find_evaluation
from tests.metarobot.run.test_training import TINY

EVALUATION = ["--tasks", "2", "--adapt-steps", "1", "--rollouts", "2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("evaluate_cli") / "maml"
    training.train(replace(TINY, iterations=1), run, progress=False).close()
    return run


def test_another_step_size_is_written_beside_the_trained_ones(run_dir) -> None:
    assert main(["evaluate", str(run_dir), *EVALUATION]) == 0
    trained = json.loads((run_dir / "eval/test_iter000001.json").read_text())
    assert main(["evaluate", str(run_dir), *EVALUATION, "--inner-lr", "0.5"]) == 0

    swept = json.loads((run_dir / "eval/test_iter000001_inner_lr0.5.json").read_text())
    assert swept["label"] == "maml @ iteration 1, inner_lr 0.5"
    assert trained["label"] == "maml @ iteration 1"
    # The same tasks and pre-adaptation rollouts; only the step differs.
    assert swept["tasks"] == trained["tasks"]
    assert swept["returns"][0] == trained["returns"][0]
    assert swept["returns"][1] != trained["returns"][1]
    assert find_evaluation(run_dir).name == "test_iter000001.json"


def test_a_step_size_out_of_range_or_unknown_to_the_agent_fails_clearly(
    run_dir, tmp_path, capsys
) -> None:
    out = tmp_path / "eval"
    flags = [*EVALUATION, "--out", str(out), "--inner-lr"]
    assert main(["evaluate", str(run_dir), *flags, "-1"]) == 2
    assert "inner_lr=-1" in capsys.readouterr().err
    scratch = tmp_path / "scratch"
    config = replace(TINY, agent="ppo-scratch", iterations=0)
    training.train(config, scratch, progress=False).close()
    assert main(["evaluate", str(scratch), *flags, "0.1"]) == 2
    assert "fields ['inner_lr']" in capsys.readouterr().err
    assert not out.exists()
