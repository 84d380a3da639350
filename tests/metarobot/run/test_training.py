"""Training loop: run directory contents, exact resume, refusal to clobber a run."""

import csv
from dataclasses import replace

import pytest
import torch

import metarobot.run.training as training
import metarobot.threads as threads
from agents import MAML
from metarobot.run.build import resolve
from metarobot.run.config import RunConfig, load_config
from metarobot.run.directory import load_run

TINY = RunConfig(
    family="PointNav2D",
    iterations=5,
    meta_batch_size=3,
    episodes_per_task=2,
    horizon=10,
    hidden_sizes=(8,),
    checkpoint_every=2,
    seed=3,
)


def final_params(parts) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in parts.agent.policy.meta_parameters().items()}


def metric_iterations(run_dir) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]


def test_run_directory_layout_and_config_round_trip(tmp_path):
    parts = training.train(TINY, tmp_path / "run", progress=False)
    parts.close()
    run = tmp_path / "run"
    assert (run / "config.toml").is_file() and any((run / "tensorboard").iterdir())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000000.pt",
        "iter_000002.pt",
        "iter_000004.pt",
        "iter_000005.pt",
    ]
    assert metric_iterations(run) == [1, 2, 3, 4, 5]
    config, agent_table = load_config(run / "config.toml")
    assert config == resolve(TINY) and agent_table["inner_lr"] == 0.1
    with open(run / "metrics.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert {"adapt/step_0/return", "adapt/step_1/return", "losses/kl", "time/sampling"} <= set(row)
    assert float(row["adapt/step_0/length"]) == 10.0  # PointNav2D episodes run to the horizon


def test_interrupted_run_resumes_to_identical_parameters(tmp_path, monkeypatch):
    reference = training.train(TINY, tmp_path / "reference", progress=False)
    reference.close()

    original = training.collect_meta_batch
    calls = {"n": 0}

    def crash_on_fourth_iteration(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "collect_meta_batch", crash_on_fourth_iteration)
    with pytest.raises(KeyboardInterrupt):
        training.train(TINY, tmp_path / "run", progress=False)
    assert metric_iterations(tmp_path / "run") == [1, 2, 3]
    monkeypatch.setattr(training, "collect_meta_batch", original)

    resumed = training.train(TINY, tmp_path / "run", resume=True, progress=False)
    resumed.close()
    assert metric_iterations(tmp_path / "run") == [1, 2, 3, 4, 5]
    expected, got = final_params(reference), final_params(resumed)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_existing_run_is_not_overwritten(tmp_path):
    training.train(TINY, tmp_path / "run", progress=False).close()
    with pytest.raises(ValueError, match="already holds a run"):
        training.train(TINY, tmp_path / "run", progress=False)


def test_load_run_picks_checkpoints(tmp_path):
    training.train(TINY, tmp_path / "run", progress=False).close()
    parts, iteration = load_run(tmp_path / "run")
    parts.close()
    assert iteration == 5
    with pytest.raises(ValueError, match=r"has no checkpoint 3; it has \[0, 2, 4, 5\]"):
        load_run(tmp_path / "run", checkpoint=3)


def test_corrupt_checkpoint_is_reported(tmp_path):
    training.train(TINY, tmp_path / "run", progress=False).close()
    latest = tmp_path / "run" / "checkpoints" / "iter_000005.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_run(tmp_path / "run")


def test_bad_run_config_names_field_and_rule():
    with pytest.raises(ValueError, match=r"backend='dask' \(must be one of"):
        RunConfig(backend="dask")
    with pytest.raises(ValueError, match=r"iterations='ten' \(must be an integer\)"):
        RunConfig.from_mapping({"iterations": "ten"})
    with pytest.raises(ValueError, match=r"adapt_on='workers' \('workers' needs backend='ray'\)"):
        RunConfig(adapt_on="workers")
    with pytest.raises(ValueError, match=r"unknown run config fields \['iteration'\]"):
        RunConfig.from_mapping({"iteration": 3})


@pytest.mark.parametrize(("update_threads", "expected"), [(1, 1), (2, 2), (0, 3)])
def test_meta_update_runs_on_update_threads_and_sampling_on_one(
    tmp_path, monkeypatch, update_threads, expected
):
    """``update_threads`` 0 (the default) means every core: three, as this test pretends."""
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    seen: dict[str, set[int]] = {"update": set(), "sampling": set()}

    def recording(name, function):
        def wrapper(*args, **kwargs):
            seen[name].add(torch.get_num_threads())
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        training, "collect_meta_batch", recording("sampling", training.collect_meta_batch)
    )
    monkeypatch.setattr(MAML, "meta_update", recording("update", MAML.meta_update))
    config = replace(TINY, iterations=2, device="cpu", update_threads=update_threads)
    training.train(config, tmp_path / "run", progress=False).close()
    assert seen == {"update": {expected}, "sampling": {1}}
    assert torch.get_num_threads() == 1
