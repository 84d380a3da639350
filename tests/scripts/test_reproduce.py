"""``scripts/reproduce.py``: its settings build, its rules decide as stated, and the committed
results agree with themselves (every reported figure comes from a committed file, every
evaluated checkpoint is committed and loads).
"""

import csv
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from metarobot.evaluation import mean_ci
from metarobot.run.build import build
from metarobot.run.checkpoints import list_checkpoints
from metarobot.run.config import RunConfig
from metarobot.run.directory import check_agent_config, load_run
from tests.scripts import ROOT, load_script

RESULTS = ROOT / "benchmarks/results"
FOLDERS = sorted(path for path in RESULTS.glob("*-s*") if (path / "config.toml").is_file())
METAWORLD = importlib.util.find_spec("metaworld") is not None

reproduce = load_script("reproduce")


def needs_metaworld(family: str) -> pytest.MarkDecorator:
    """Meta-World families run where Meta-World is installed (scripts/test.sh's second pass)."""
    return pytest.mark.skipif(
        family.startswith("MetaWorld") and not METAWORLD, reason="needs the metaworld extra"
    )


@pytest.mark.parametrize(
    "key",
    [pytest.param(key, marks=needs_metaworld(key[0])) for key in reproduce.SETTINGS],
    ids=lambda key: "/".join(filter(None, key)),
)
def test_every_setting_builds_its_run(key):
    family, agent, _ = key
    setting = reproduce.SETTINGS[key]
    check_agent_config(agent, setting.agent)
    config = RunConfig(family=family, agent=agent, iterations=setting.iterations, **setting.run)
    parts = build(replace(config, backend="local", workers=1), setting.agent or None)
    parts.close()


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_a_result_folder_names_its_setting(folder):
    experiment = reproduce.Experiment.of(folder)
    assert experiment.folder == Path("benchmarks/results") / folder.name
    assert experiment.setting in reproduce.SETTINGS.values()


@pytest.mark.parametrize(
    "folder",
    [pytest.param(folder, marks=needs_metaworld(folder.name)) for folder in FOLDERS],
    ids=lambda folder: folder.name,
)
def test_every_evaluated_checkpoint_is_committed_and_loads(folder):
    kept = list_checkpoints(folder / "checkpoints")
    evaluated = {
        reproduce.evaluated_with(json.loads(path.read_text()))[0] for path in folder.glob("*.json")
    }
    assert evaluated <= set(kept), f"{folder.name}: evaluated {evaluated}, committed {kept}"
    for iteration in sorted(evaluated | {max(kept)}):
        parts, loaded = load_run(folder, checkpoint=iteration, backend="local", workers=1)
        parts.close()
        assert loaded == iteration


@pytest.mark.parametrize(
    "folder",
    [folder for folder in FOLDERS if (folder / reproduce.VALIDATION_FILE).is_file()],
    ids=lambda folder: folder.name,
)
def test_the_committed_choice_is_what_validation_csv_gives(folder):
    with open(folder / reproduce.VALIDATION_FILE, newline="") as handle:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    selected = folder / reproduce.SELECTED_FILE
    committed = (
        reproduce.evaluated_with(json.loads(selected.read_text()))[0]
        if selected.is_file()
        else None
    )
    assert reproduce.choose_checkpoint(rows) == committed


def test_the_committed_report_is_what_the_committed_files_give(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(reproduce, "REPORT", tmp_path / "paper_results.md")
    reproduce.report()
    capsys.readouterr()
    assert (tmp_path / "paper_results.md").read_text() == (
        ROOT / "benchmarks/paper_results.md"
    ).read_text()


def _row(iteration: int, after: float, gain: float, gain_ci95: float) -> dict[str, float]:
    return {
        "iteration": iteration,
        "before": after - gain,
        "after": after,
        "gain": gain,
        "gain_ci95": gain_ci95,
    }


def test_the_choice_is_the_best_adapted_return_among_gains_beyond_their_cis():
    rows = [
        _row(100, after=500.0, gain=80.0, gain_ci95=90.0),  # best return, gain within its CI
        _row(200, after=300.0, gain=60.0, gain_ci95=10.0),  # largest gain beyond its CI
        _row(300, after=400.0, gain=20.0, gain_ci95=19.0),  # best return beyond its CI
    ]
    assert reproduce.choose_checkpoint(rows) == 300
    assert reproduce.choose_checkpoint(rows[:1]) is None
    assert reproduce.choose_checkpoint([_row(400, 1.0, 5.0, 5.0)]) is None  # bound at 0: no


def test_the_paired_gain_is_the_mean_per_task_difference_with_its_ci():
    before = np.array([10.0, 20.0, 30.0, 40.0])
    after = before + np.array([1.0, 3.0, 2.0, 6.0])
    result = {"returns": [before.tolist(), after.tolist()], "success": [[0, 0, 1, 1], [1, 1, 1, 1]]}
    assert reproduce.paired_gain(result) == pytest.approx(mean_ci(after - before))
    gain, ci = reproduce.paired_gain(result)
    assert gain == pytest.approx(3.0)
    assert 0 < ci < mean_ci(after)[1]  # pairing removes the spread between tasks
    assert reproduce.paired_gain(result, "success") == pytest.approx(
        mean_ci(np.array([1, 1, 0, 0]))
    )


def _summary(*steps: tuple[float, float]) -> dict[str, list[dict[str, float]]]:
    rows = [
        {"return_mean": mean, "return_ci95": ci, "success_mean": 0.5, "success_ci95": 0.1}
        for mean, ci in steps
    ]
    return {"summary": rows}


def test_verify_agrees_within_the_ci_of_a_difference_and_not_beyond():
    saved = _summary((-100.0, 3.0), (-60.0, 4.0))
    assert reproduce.within_cis(saved, saved)
    assert reproduce.within_cis(_summary((-104.0, 3.0), (-60.0, 4.0)), saved)  # 4 <= hypot(3, 3)
    assert not reproduce.within_cis(_summary((-100.0, 3.0), (-66.0, 4.0)), saved)  # 6 > 5.66


def test_matched_iterations_give_mamls_env_step_budget():
    assert reproduce.matched_iterations(1) == 500
    assert reproduce.matched_iterations(3) == 250


def test_verify_names_the_committed_folders_when_given_an_unknown_one():
    with pytest.raises(ValueError, match=r"no result folder \['NoSuchRun-s0'\].*AntVel-maml-s0"):
        reproduce.verify([Path("NoSuchRun-s0")])
