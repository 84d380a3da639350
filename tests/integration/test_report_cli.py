"""``metarobot report`` end to end on two tiny runs: evaluate, pool, Markdown and PNG; refusals."""

from dataclasses import replace
from pathlib import Path

import pytest

import metarobot.run.training as training
from metarobot.cli import main
from tests.metarobot.run.test_training import TINY
from tests.metarobot.test_report import grouped_run

EVALUATION = ["--tasks", "3", "--adapt-steps", "1", "--rollouts", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("report_cli")
    configs = {
        "maml": replace(TINY, iterations=2),
        "scratch": replace(TINY, agent="ppo-scratch", iterations=0),
    }
    for name, config in configs.items():
        training.train(config, root / name, progress=False).close()
    return [root / name for name in configs]


def test_report_evaluates_runs_and_writes_markdown_and_png(runs, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    code = main(["report", *map(str, runs), "--evaluate", *EVALUATION, "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report.png"]
    markdown = (out / "report.md").read_text()
    assert "| maml | 1 |" in markdown and "| ppo-scratch | 1 |" in markdown
    assert "3 test tasks" in markdown and "2 rollouts x 10 steps = 20 env steps" in markdown
    assert "![adaptation curves](report.png)" in markdown
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "| agent | runs | 0 steps | 1 step |" in printed and str(out / "report.md") in printed
    for run in runs:  # evaluated the way `metarobot evaluate` does, into the run
        assert any((run / "eval").glob("test_iter*.json"))

    # Read back without re-evaluating: the same report.
    again = tmp_path / "again"
    assert main(["report", *map(str, runs), "--out", str(again)]) == 0
    assert (again / "report.md").read_text() == markdown


def test_report_refuses_runs_evaluated_differently(runs, tmp_path, capsys) -> None:
    for run, tasks in zip(runs, ("3", "4"), strict=True):
        assert main(["evaluate", str(run), "--tasks", tasks, "--adapt-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "report")]) == 2
    error = capsys.readouterr().err
    assert "different task sets or budgets (tasks, task set differ)" in error
    assert all(str(run) in error for run in runs) and "--evaluate" in error
    assert not (tmp_path / "report").exists()


def test_report_says_what_is_missing(runs, tmp_path, capsys) -> None:
    training.train(
        replace(TINY, agent="ppo-scratch", iterations=0), tmp_path / "run", progress=False
    ).close()
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "metarobot evaluate" in capsys.readouterr().err
    outside = tmp_path / "elsewhere"
    assert main(["evaluate", str(runs[0]), *EVALUATION[:4], "--out", str(outside)]) == 0
    capsys.readouterr()
    assert main(["report", str(next(outside.glob("*.json")))]) == 2
    assert "not in a run's eval/ folder" in capsys.readouterr().err


def test_report_protocol_picks_its_evaluation_files(tmp_path, capsys) -> None:
    runs = [str(grouped_run(tmp_path, f"maml{seed}", seed=seed)) for seed in (0, 1)]
    out = tmp_path / "metaworld"
    assert main(["report", *runs, "--protocol", "metaworld", "--out", str(out)]) == 0
    assert "| agent | runs | mean over skills | reach-v3 | push-v3 |" in capsys.readouterr().out
    markdown = (out / "report.md").read_text()
    assert "Meta-World+ protocol" in markdown and "| maml | 2 |" in markdown
    assert "(../maml0/eval/metaworld_test_iter000010.json)" in markdown
    assert main(["report", *runs, "--out", str(tmp_path / "maml")]) == 0
    assert "| agent | runs | 0 steps | 1 step |" in capsys.readouterr().out
    markdown = (tmp_path / "maml" / "report.md").read_text()
    assert "Meta-World+" not in markdown and "(../maml0/eval/test_iter000010.json)" in markdown


def test_report_evaluates_under_its_protocol(runs, tmp_path, capsys) -> None:
    command = ["report", str(runs[0]), "--evaluate", "--protocol", "metaworld", *EVALUATION]
    assert main([*command, "--out", str(tmp_path)]) == 2
    assert "PointNav2D is not one: use --protocol maml" in capsys.readouterr().err
