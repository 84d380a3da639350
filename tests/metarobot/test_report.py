"""Comparison report: reading evaluations, pooling seeds, CI arithmetic, labels, refusals."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import envs
from agents import AGENTS
from metarobot.evaluation import METAWORLD_PLUS, Z_95, AdaptationResult, write_results
from metarobot.report import (
    EVAL_FILE,
    check_comparable,
    evaluation_stem,
    load_evaluation,
    pool,
    skill_table,
    write_report,
)
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


SKILLS = ("reach-v3", "reach-v3", "reach-v3", "push-v3", "push-v3", "push-v3")
"""Each task's skill in a grouped (Meta-World+) evaluation: two skills of three tasks."""


def grouped_result(seed: int, iteration: int) -> AdaptationResult:
    """A made-up Meta-World+ evaluation: success in thirds (3 episodes measured per task)."""
    rng = np.random.default_rng(seed)
    return AdaptationResult(
        tasks=FAMILY.sample_tasks(len(SKILLS), "test", seed=0),
        returns=rng.normal(100, 20, size=(2, len(SKILLS))),
        success=rng.integers(0, 4, size=(2, len(SKILLS))) / 3,
        rollouts=METAWORLD_PLUS.rollouts,
        label=f"maml @ iteration {iteration}",
        groups=SKILLS,
        versions={"mujoco": "3.3.0", "metaworld": "3.0.0"},
        protocol=METAWORLD_PLUS.describe(),
    )


def grouped_run(root: Path, name: str, seed: int = 0, iteration: int = 10) -> Path:
    """A run as :func:`fake_run` makes it, plus :func:`grouped_result` where evaluate puts it."""
    run_dir = fake_run(root, name, seed=seed, tasks=len(SKILLS), steps=1, iteration=iteration)
    stem = evaluation_stem("test", iteration, "metaworld")
    write_results(grouped_result(seed, iteration), run_dir / "eval", stem)
    return run_dir


def test_grouped_evaluation_reads_back_as_written(tmp_path: Path) -> None:
    run = grouped_run(tmp_path, "run")
    path = run / "eval" / "metaworld_test_iter000010.json"
    written = grouped_result(0, 10)
    for given in (run, path):  # the run, or the JSON named directly
        loaded = load_evaluation(given, protocol="metaworld")
        assert loaded.path == path and loaded.iteration == 10
        for name in ("tasks", "rollouts", "label", "groups", "versions", "protocol"):
            assert getattr(loaded.result, name) == getattr(written, name), name
        np.testing.assert_array_equal(loaded.result.returns, written.returns)
        np.testing.assert_array_equal(loaded.result.success, written.success)


def test_protocol_selects_which_evaluation_files_are_read(tmp_path: Path) -> None:
    run = grouped_run(tmp_path, "run", iteration=10)
    plain = AdaptationResult(
        FAMILY.sample_tasks(len(SKILLS), "test", seed=0), np.zeros((2, 6)), np.zeros((2, 6)), 5, ""
    )
    write_results(plain, run / "eval", "test_iter000020")  # the latest file, but not Meta-World+'s
    assert load_evaluation(run, protocol="metaworld").path.name == "metaworld_test_iter000010.json"
    assert load_evaluation(run).path.name == "test_iter000020.json"
    assert not load_evaluation(run).result.groups
    with pytest.raises(ValueError, match="--split train --protocol metaworld"):
        load_evaluation(run, split="train", protocol="metaworld")
    for protocol in ("maml", "metaworld"):
        stem = evaluation_stem("train", 7, protocol)
        match = EVAL_FILE.fullmatch(f"{stem}.json")
        assert match and (match["split"], match["iteration"]) == ("train", "000007")


def test_grouped_seeds_pool_with_each_tasks_skill(tmp_path: Path) -> None:
    runs = [grouped_run(tmp_path, f"maml{seed}", seed=seed) for seed in (0, 1)]
    evaluations = [load_evaluation(run, protocol="metaworld") for run in runs]
    (row,) = pool(evaluations)
    assert row.pooled.groups == SKILLS * 2
    assert row.pooled.protocol == METAWORLD_PLUS.describe()
    # Independently: each skill over its 3 tasks x 2 seeds after the step, then the plain mean.
    after = np.concatenate([e.result.success[-1] for e in evaluations])
    skills = np.array(SKILLS * 2)
    expected = {}
    for skill in ("reach-v3", "push-v3"):
        values = after[skills == skill]
        assert values.shape == (6,)
        expected[skill] = (values.mean(), Z_95 * values.std(ddof=1) / np.sqrt(6))
    (reach, reach_ci), (push, push_ci) = expected.values()
    *per_skill, mean = row.pooled.group_summary()
    for summary in per_skill:
        assert (summary["success_mean"], summary["success_ci95"]) == pytest.approx(
            expected[str(summary["group"])]
        )
    assert mean["success_mean"] == pytest.approx((reach + push) / 2)
    assert mean["success_ci95"] == pytest.approx(np.hypot(reach_ci, push_ci) / 2)
    cells = [f"{(reach + push) / 2:.3f} ± {np.hypot(reach_ci, push_ci) / 2:.3f}"]
    cells += [f"{reach:.3f} ± {reach_ci:.3f}", f"{push:.3f} ± {push_ci:.3f}"]
    table = skill_table([row])
    assert table.splitlines()[0] == "| agent | runs | mean over skills | reach-v3 | push-v3 |"
    assert table.splitlines()[2] == "| maml | 2 | " + " | ".join(cells) + " |"


def test_reports_state_versions_and_grouped_ones_protocol_and_success_per_skill(
    tmp_path: Path,
) -> None:
    runs = [grouped_run(tmp_path, f"maml{seed}", seed=seed) for seed in (0, 1)]
    rows = pool([load_evaluation(run, protocol="metaworld") for run in runs])
    text = write_report(rows, tmp_path / "report")[0].read_text()
    assert (
        "PointNav2D: 6 test tasks of 2 skills (set " in text
        and "), Meta-World+ protocol: 1 adaptation step on 10 episodes each, 3 episodes "
        "measured after, 500 steps per episode. Each cell"
        in text
    )
    assert "Software: mujoco 3.3.0, metaworld 3.0.0." in text
    assert "## Success per skill after 1 adaptation step" in text
    assert skill_table(rows) in text and "## Return" in text
    assert "(../maml0/eval/metaworld_test_iter000010.json)" in text
    plain = write_report(pool([load_evaluation(run) for run in runs]), tmp_path / "plain")[0]
    assert "Software: mujoco 4.0.0." in plain.read_text()  # what the plain fixture records
    assert "per skill" not in plain.read_text()


def test_runs_evaluated_under_different_protocols_are_refused(tmp_path: Path) -> None:
    metaworld = load_evaluation(grouped_run(tmp_path, "metaworld"), protocol="metaworld")
    result = replace(metaworld.result, groups=(), protocol="")
    write_results(result, tmp_path / "maml" / "eval", "test_iter000010")
    (tmp_path / "maml" / "config.toml").write_bytes(
        (metaworld.run_dir / "config.toml").read_bytes()
    )
    with pytest.raises(
        ValueError, match=r"different task sets or budgets \(protocol differ\)"
    ) as error:
        check_comparable([metaworld, load_evaluation(tmp_path / "maml")])
    message = str(error.value)
    assert "protocol Meta-World+ protocol: 1 adaptation step" in message
    assert "protocol MAML paper's" in message and "--protocol P" in message
