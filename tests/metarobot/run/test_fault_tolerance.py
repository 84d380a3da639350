"""Runs survive kills, interrupts, bad input and non-finite updates.

A training subprocess is killed with SIGKILL at several points (during start-up, between
checkpoints, right after one), then interrupted with SIGINT, and resumed each time; it ends
with the parameters of an uninterrupted run. Bad checkpoints, configs and overrides are refused
with a message, leaving every byte of the run directory as it was.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import metarobot.run.training as training
from agents.maml import MAML
from metarobot.cli import main
from metarobot.run.checkpoints import list_checkpoints, load_checkpoint, save_checkpoint
from metarobot.run.config import load_config
from metarobot.sampling import NonFiniteParametersError
from tests.metarobot.run.test_training import TINY, final_params

ROOT = Path(__file__).resolve().parents[3]
ITERATIONS = 16
"""Leaves the interrupt at iteration 9 a margin: a loaded machine runs on while it arrives."""
RUN = replace(TINY, iterations=ITERATIONS)
FLAGS = [
    "--family", "PointNav2D", "--iterations", str(ITERATIONS), "--meta-batch-size", "3",
    "--episodes-per-task", "2", "--horizon", "10", "--hidden-sizes", "8",
    "--checkpoint-every", "2", "--seed", "3", "--no-progress",
]  # fmt: skip
CLI = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from metarobot.cli import main; sys.exit(main(sys.argv[1:]))"
)


def start_training(run_dir: Path) -> subprocess.Popen[bytes]:
    """``metarobot train`` in a subprocess: fresh, or ``--resume`` once the run has a config.

    It starts with SIGINT ignored, as a shell starts a background job: training must still
    answer an interrupt.
    """
    resume = ["--resume"] if (run_dir / "config.toml").exists() else []
    command = [sys.executable, "-c", CLI, "train", "--out", str(run_dir), *FLAGS, *resume]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    try:
        with open(run_dir / "metrics.csv", newline="") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        return []


def wait_for_rows(process: subprocess.Popen[bytes], run_dir: Path, rows: int) -> None:
    """Wait until ``metrics.csv`` has ``rows`` rows (0: until the process is past start-up)."""
    deadline = time.monotonic() + 60
    while len(metrics_rows(run_dir)) < rows:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.005)


def assert_whole(run_dir: Path) -> int:
    """Every checkpoint loads, the metrics parse and reach the last checkpoint; its iteration."""
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    for path in checkpoints.values():
        load_checkpoint(path, expect={"agent_name": "maml", "family": "PointNav2D"})
    rows = metrics_rows(run_dir)
    assert [int(row["iteration"]) for row in rows] == list(range(1, len(rows) + 1))
    last = max(checkpoints, default=0)
    assert len(rows) >= last
    return last


def test_killed_and_interrupted_runs_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = training.train(RUN, tmp_path / "reference", progress=False)
    reference.close()
    run_dir = tmp_path / "run"
    rng = random.Random(7)
    killed_at = []
    # Metrics rows to wait for, then a random delay: start-up, mid-run, just after a
    # checkpoint (even rows), near the end.
    for rows, delay in [(0, 1.5), (1, 0.0), (3, 0.1), (6, 0.0), (7, 0.05)]:
        process = start_training(run_dir)
        wait_for_rows(process, run_dir, rows)
        time.sleep(rng.uniform(0.0, delay))
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append((len(metrics_rows(run_dir)), assert_whole(run_dir)))
    assert len(set(killed_at)) >= 4, killed_at  # the kills hit different places

    process = start_training(run_dir)
    wait_for_rows(process, run_dir, 9)
    time.sleep(0.03)  # into iteration 10; checkpoints are due at even iterations only
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted: the last complete iteration is checkpointed" in stderr
    # The last complete iteration (9, or later on a loaded machine) is checkpointed; a row
    # written just before the interrupt may be one ahead, and is redone on resume.
    last = assert_whole(run_dir)
    assert 9 <= last < ITERATIONS and last >= len(metrics_rows(run_dir)) - 1

    process = start_training(run_dir)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert assert_whole(run_dir) == ITERATIONS and len(metrics_rows(run_dir)) == ITERATIONS
    assert not list(run_dir.rglob("*.tmp*"))
    state = load_checkpoint(run_dir / "checkpoints" / f"iter_{ITERATIONS:06d}.pt")["agent"][
        "policy"
    ]
    for name, value in final_params(reference).items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    training.train(TINY, run_dir, progress=False).close()
    return run_dir


def digest(run_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def rewrite_checkpoint(path: Path, **changes: Any) -> None:
    state = load_checkpoint(path)
    state.pop("format_version")
    save_checkpoint(path, {**state, **changes})


LATEST = "checkpoints/iter_000005.pt"


def truncate(run_dir: Path) -> None:
    path = run_dir / LATEST
    path.write_bytes(path.read_bytes()[:300])


def scramble(run_dir: Path) -> None:
    (run_dir / LATEST).write_bytes(b"not a checkpoint at all" * 10)


def other_agent(run_dir: Path) -> None:
    rewrite_checkpoint(run_dir / LATEST, agent_name="reptile")


def other_family(run_dir: Path) -> None:
    rewrite_checkpoint(run_dir / LATEST, family="AntGoal")


def other_sizes(run_dir: Path) -> None:
    state = load_checkpoint(run_dir / LATEST)
    state["agent"]["policy"]["mean.0.weight"] = torch.zeros(16, 2)
    rewrite_checkpoint(run_dir / LATEST, agent=state["agent"])


def bad_toml(run_dir: Path) -> None:
    (run_dir / "config.toml").write_text("[run\nfamily = 'PointNav2D'")


def wrong_type_in_config(run_dir: Path) -> None:
    text = (run_dir / "config.toml").read_text()
    (run_dir / "config.toml").write_text(text.replace("seed = 3", 'seed = "three"'))


def nothing(run_dir: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("damage", "flags", "message"),
    [
        (truncate, [], r"iter_000005\.pt is corrupt or truncated"),
        (scramble, [], r"iter_000005\.pt is corrupt or truncated"),
        (other_agent, [], r"iter_000005\.pt is for agent_name 'reptile', but this run uses 'maml'"),
        (other_family, [], r"is for family 'AntGoal', but this run uses 'PointNav2D'"),
        (other_sizes, [], r"(?s)iter_000005\.pt does not fit the run .*mean\.0\.weight"),
        (bad_toml, [], r"config\.toml is not valid TOML"),
        (wrong_type_in_config, [], r"config\.toml: invalid run config: seed='three' \(must be an"),
        (nothing, ["--iterations", "-3"], r"iterations=-3 \(must be >= 0\)"),
        (nothing, ["--workers", "0"], r"workers=0 \(must be >= 1\)"),
        (nothing, ["--family", "AntGoal"], r"cannot change family='AntGoal' \(the run has 'Point"),
        (nothing, ["--set", "inner_lr=0.5"], r"inner_lr=0\.5 \(the run has 0\.1\)"),
        (nothing, ["--set", "inner_lr=fast"], r"inner_lr='fast' \(the run has 0\.1\)"),
        (nothing, ["--set", "inner_lr"], r"--set expects KEY=VALUE, got 'inner_lr'"),
        (
            nothing,
            ["--env-option", "max_force=2"],
            r"cannot change env_options=\{'max_force': 2\} \(the run has \{\}\)",
        ),
        (nothing, ["--env-option", "horizon=5"], r"env_options=\{'horizon': 5\} \(may not set"),
        (nothing, ["--ray-address", "auto"], r"--ray-address needs --backend ray"),
    ],
)
def test_bad_input_is_refused_and_the_run_directory_is_untouched(
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Any,
    flags: list[str],
    message: str,
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    damage(run_dir)
    before = digest(run_dir)
    assert main(["train", "--out", str(run_dir), "--resume", "--no-progress", *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith("metarobot train: error: "), error
    assert re.search(message, error), error
    assert digest(run_dir) == before


def test_bad_config_file_or_override_for_a_new_run_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[run]\nmeta_batch_size = 0\n[agent]\ninner_lr = 0.1\n")
    assert main(["train", "--out", str(tmp_path / "a"), "--config", str(config)]) == 2
    assert "meta_batch_size=0 (must be >= 1)" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "b"), "--set", "inner_lr=fast"]) == 2
    assert "inner_lr='fast' (must be a number)" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "c"), "--set", "bogus=1"]) == 2
    assert "unknown MAMLConfig fields ['bogus']" in capsys.readouterr().err
    new_ant = ["train", "--out", str(tmp_path / "d"), "--family", "AntVel"]
    assert main([*new_ant, "--env-option", "bogus=1"]) == 2
    assert "env_options {'bogus': 1} do not fit AntVel" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_resume_may_change_how_a_run_executes_but_not_what_it_computes(
    trained: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    longer = replace(TINY, iterations=6, backend="process", checkpoint_every=3, keep_every=3)
    parts = training.train(longer, run_dir, resume=True, progress=False)
    parts.close()
    assert parts.config.backend == "process" and parts.config.iterations == 6
    saved, _ = load_config(run_dir / "config.toml")
    assert (saved.backend, saved.iterations, saved.checkpoint_every) == ("process", 6, 3)
    assert saved.keep_every == 3
    with pytest.raises(ValueError, match=r"cannot change seed=4 \(the run has 3\)"):
        training.train(replace(TINY, seed=4), run_dir, resume=True, progress=False)


def test_a_run_killed_before_its_first_checkpoint_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    training.train(replace(TINY, iterations=2), run_dir, progress=False).close()
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "metrics.csv").unlink()
    (run_dir / "metrics.csv.tmp.csv").write_text("iteration,half a ro")
    parts = training.train(replace(TINY, iterations=2), run_dir, resume=True, progress=False)
    parts.close()
    reference = training.train(replace(TINY, iterations=2), tmp_path / "ref", progress=False)
    reference.close()
    assert sorted(list_checkpoints(run_dir / "checkpoints")) == [0, 2]
    assert not (run_dir / "metrics.csv.tmp.csv").exists()
    for name, value in final_params(reference).items():
        torch.testing.assert_close(final_params(parts)[name], value, rtol=0, atol=0)


def test_non_finite_updates_are_dropped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"update": 0, "collect": 0}
    update = MAML.meta_update

    def poisoned_update(self: MAML, batch: Any) -> dict[str, float]:
        calls["update"] += 1
        metrics = update(self, batch)
        if calls["update"] == 2:
            with torch.no_grad():
                self.policy.log_std.fill_(float("nan"))
        if calls["update"] == 3:
            metrics["losses/kl"] = float("inf")
        return metrics

    collect = training.collect_meta_batch

    def diverging_collect(*args: Any, **kwargs: Any) -> Any:
        calls["collect"] += 1
        if calls["collect"] == 4:
            raise NonFiniteParametersError("params['log_std'] holds NaN or infinity for tasks [1]")
        return collect(*args, **kwargs)

    monkeypatch.setattr(MAML, "meta_update", poisoned_update)
    monkeypatch.setattr(training, "collect_meta_batch", diverging_collect)
    with pytest.warns(training.NonFiniteUpdateWarning) as warned:
        parts = training.train(replace(TINY, iterations=5), tmp_path / "run", progress=False)
    parts.close()
    assert [str(w.message).split(":")[0] for w in warned] == [
        "iteration 2",
        "iteration 3",
        "iteration 4",
    ]
    assert "non-finite losses/kl" in str(warned[1].message)
    assert all(torch.isfinite(p).all() for p in final_params(parts).values())
    rows = metrics_rows(tmp_path / "run")
    assert [float(row["losses/nonfinite"]) for row in rows] == [0, 1, 1, 1, 0]
    assert rows[1]["losses/kl"] == "" and rows[1]["adapt/step_0/return"] != ""
    assert float(rows[4]["losses/kl"]) > 0  # training went on
