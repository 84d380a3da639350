"""Comparison report: reading evaluations, pooling seeds, CI arithmetic, labels, refusals."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import envs
from agents import AGENTS
from metarobot.evaluation import Z_95, AdaptationResult, write_results
from metarobot.report import check_comparable, load_evaluation, pool, write_report
from metarobot.run.config import RunConfig, load_config, save_config

FAMILY = envs.get_family("PointNav2D")
CONFIG = RunConfig(family="PointNav2D", horizon=100, hidden_sizes=(8,), device="cpu")


def fake_run(
    root: Path,
    name: str,
    agent: str = "maml",
    seed: int = 0,
    agent_config: dict | None = None,
    tasks: int = 4,
    task_seed: int = 0,
    steps: int = 2,
    rollouts: int = 5,
    horizon: int = 100,
    iteration: int = 10,
    versions: dict | None = None,
) -> Path:
    """A run directory with a config and an evaluation of made-up returns (no training)."""
    run_dir = root / name
    run_dir.mkdir()
    save_config(
        run_dir / "config.toml",
        replace(CONFIG, agent=agent, seed=seed, horizon=horizon),
        AGENTS[agent].config_class(**(agent_config or {})),
    )
    rng = np.random.default_rng(seed + 100 * len(agent))
    returns = rng.normal(-50, 10, size=(steps + 1, tasks)) + 10 * np.arange(steps + 1)[:, None]
    result = AdaptationResult(
        tasks=FAMILY.sample_tasks(tasks, "test", seed=task_seed),
        returns=returns,
        success=(returns > -45).astype(float),
        rollouts=rollouts,
        label=f"{agent} @ iteration {iteration}",
        versions=versions or {"mujoco": "4.0.0"},
    )
    write_results(result, run_dir / "eval", f"test_iter{iteration:06d}")
    return run_dir


def test_seeds_pool_into_one_row_with_ci_over_tasks_and_seeds(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path, f"maml{s}", seed=s) for s in (0, 1, 2)]
    runs.append(fake_run(tmp_path, "scratch", agent="ppo-scratch", iteration=0))
    evaluations = [load_evaluation(run) for run in runs]
    rows = pool(evaluations)
    assert [row.label for row in rows] == ["maml", "ppo-scratch"]
    assert [len(row.runs) for row in rows] == [3, 1]
    values = np.concatenate([e.result.returns[2] for e in evaluations[:3]])
    assert values.shape == (12,)
    last = rows[0].summary()[2]
    assert last["return_mean"] == pytest.approx(values.mean())
    assert last["return_ci95"] == pytest.approx(Z_95 * values.std(ddof=1) / np.sqrt(12))
    successes = np.concatenate([e.result.success[0] for e in evaluations[:3]])
    assert rows[0].summary()[0]["success_mean"] == pytest.approx(successes.mean())


def test_latest_evaluation_of_the_split_is_read(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "run", iteration=10)
    later = AdaptationResult(
        FAMILY.sample_tasks(4, "test", seed=0), np.zeros((3, 4)), np.zeros((3, 4)), 5, "later"
    )
    write_results(later, run / "eval", "test_iter000020")
    write_results(replace(later, label="train"), run / "eval", "train_iter000030")
    evaluation = load_evaluation(run)
    assert evaluation.iteration == 20 and evaluation.result.label == "later"
    assert load_evaluation(run / "eval" / "test_iter000010.json").iteration == 10
    with pytest.raises(ValueError, match="metarobot evaluate"):
        load_evaluation(run, split="nothing")


def test_runs_differing_only_in_execution_pool(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path, "a"), fake_run(tmp_path, "b", seed=1)]
    config, agent_table = load_config(runs[1] / "config.toml")
    save_config(
        runs[1] / "config.toml",
        replace(config, update_threads=1, workers=2),
        AGENTS["maml"].config_class(**agent_table),
    )
    assert [len(row.runs) for row in pool([load_evaluation(run) for run in runs])] == [2]


def test_variants_of_one_agent_get_rows_labelled_by_their_differences(tmp_path: Path) -> None:
    runs = [
        fake_run(tmp_path, "a", agent_config={"inner_lr": 0.1, "first_order": False}),
        fake_run(tmp_path, "b", seed=1, agent_config={"inner_lr": 0.1, "first_order": False}),
        fake_run(tmp_path, "c", agent_config={"inner_lr": 0.05, "first_order": False}),
        fake_run(tmp_path, "d", agent="reptile", iteration=3),
    ]
    rows = pool([load_evaluation(run) for run in runs])
    labels = ["maml (inner_lr=0.1)", "maml (inner_lr=0.05)", "reptile"]
    assert [row.label for row in rows] == labels
    assert [len(row.runs) for row in rows] == [2, 1, 1]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"task_seed": 1}, "task set"),
        ({"tasks": 5}, "tasks"),
        ({"rollouts": 10}, "rollouts per step"),
        ({"steps": 3}, "adaptation steps"),
        ({"horizon": 50}, "horizon"),
        ({"versions": {"mujoco": "3.3.0"}}, "versions"),
    ],
)
def test_different_task_sets_or_budgets_are_refused(tmp_path: Path, change, named) -> None:
    same = fake_run(tmp_path, "same")
    other = fake_run(tmp_path, "other", agent="ppo-scratch", **change)
    with pytest.raises(ValueError, match="different task sets or budgets") as error:
        check_comparable([load_evaluation(same), load_evaluation(other)])
    message = str(error.value)
    assert named in message and "same" in message and "other" in message
    assert ("cannot be compared" if named == "horizon" else "--evaluate") in message


def test_report_files_link_plot_runs_and_videos(tmp_path: Path) -> None:
    runs = [fake_run(tmp_path, "maml"), fake_run(tmp_path, "scratch", agent="ppo-scratch")]
    (runs[0] / "videos").mkdir()
    (runs[0] / "videos" / "test_3_steps0-1_iter000010.mp4").write_bytes(b"")
    out = tmp_path / "report"
    markdown, png = write_report(pool([load_evaluation(run) for run in runs]), out)
    text = markdown.read_text()
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "![adaptation curves](report.png)" in text
    assert "## Return" in text and "## Success rate" in text
    assert "| maml | 1 |" in text and "| ppo-scratch | 1 |" in text
    assert "5 rollouts x 100 steps = 500 env steps" in text
    assert "(../maml/videos/test_3_steps0-1_iter000010.mp4)" in text
    assert "(../maml/eval/test_iter000010.json)" in text
