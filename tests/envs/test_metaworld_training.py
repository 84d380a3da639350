"""MAML on ML10 end to end (train, ``evaluate`` and ``report --protocol metaworld``), on the local
and Ray backend.

The Meta-World tests need the ``metaworld`` extra (see test_metaworld.py); the arithmetic of the
per-skill summary and the refusal of the protocol for other families run everywhere.
"""

import argparse
import importlib.metadata
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import metarobot.run.training as training
from envs.manipulation.metaworld_multi import ML10
from metarobot.cli import main
from metarobot.cli.evaluate import metaworld_setting
from metarobot.evaluation import (
    METAWORLD_PLUS,
    Z_95,
    AdaptationResult,
    Protocol,
    evaluate_protocol,
)
from metarobot.policies import GaussianMLPPolicy, expand_params
from metarobot.run.build import sampler_env_fn
from metarobot.run.directory import load_run
from metarobot.sampling import LocalSampler
from metarobot.tasks import Task
from tests.envs.test_metaworld import needs_metaworld
from tests.metarobot.run.test_training import TINY, final_params
from tests.metarobot.sampling.tiny import assert_identical

# Four tasks of four skills, 20-step episodes.
TINY_ML10 = replace(
    TINY, family="MetaWorldML10", iterations=1, meta_batch_size=4, horizon=20, device="cpu"
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ml10") / "run"
    training.train(TINY_ML10, path, progress=False).close()
    return path


@needs_metaworld
def test_maml_on_ml10_trains_evaluates_and_reports_with_metaworld_plus_protocol(run_dir, tmp_path):
    defaults = argparse.Namespace(split="test", tasks=None, adapt_steps=None, rollouts=None)
    tasks, skills, protocol = metaworld_setting(ML10, defaults)
    assert (
        protocol == METAWORLD_PLUS
        and len(tasks) == 40 * 5
        and tuple(skills[::40]) == ML10.test_skills
    )
    command = ["evaluate", str(run_dir), "--protocol", "metaworld", "--tasks", "1"]
    assert main([*command, "--rollouts", "2"]) == 0
    stem = run_dir / "eval" / "metaworld_test_iter000001"
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["groups"] == list(ML10.test_skills)  # the first task of each held-out skill
    assert data["rollouts"] == 2
    assert data["protocol"] == (
        "Meta-World+ protocol: 1 adaptation step on 2 episodes each, 3 episodes measured "
        "after, 500 steps per episode"
    )
    assert data["versions"]["metaworld"] == importlib.metadata.version("metaworld")
    assert data["versions"]["mujoco"] == importlib.metadata.version("mujoco")
    rows = data["group_summary"]
    assert [row["group"] for row in rows] == [*ML10.test_skills, "mean"]
    assert all(0 <= row["success_mean"] <= 1 for row in rows)
    # 3 episodes measured per task: success rates are thirds.
    assert all(float(3 * s).is_integer() for s in data["success"][1])
    summary = stem.with_suffix(".md").read_text()
    assert "| drawer-open-v3 | 1 |" in summary and "Software: mujoco" in summary
    # `metarobot report` reads it back: success per held-out skill, with the versions.
    assert main(["report", str(run_dir), "--protocol", "metaworld", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| maml | 1 | " in report and " | ".join(ML10.test_skills) + " |" in report
    assert f"metaworld {data['versions']['metaworld']}" in report


@needs_metaworld
def test_batched_evaluation_equals_one_batch(run_dir):
    parts, _ = load_run(run_dir)
    tasks = parts.family.skill_tasks("test", 1)
    protocol = Protocol(1, 2, final_rollouts=1, horizon=15)
    try:
        whole = evaluate_protocol(parts.agent, parts.sampler, tasks, protocol, seed=5)
        batched = evaluate_protocol(
            parts.agent, parts.sampler, tasks, replace(protocol, batch_size=2), seed=5
        )
    finally:
        parts.close()
    np.testing.assert_array_equal(whole.returns, batched.returns)
    np.testing.assert_array_equal(whole.success, batched.success)


@needs_metaworld
@pytest.mark.ray
@pytest.mark.slow
def test_ray_samples_mixed_skills_as_local_does_and_trains_alike(run_dir, tmp_path):
    ray = pytest.importorskip("ray")
    from metarobot.sampling import RaySampler

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        torch.manual_seed(0)
        policy = GaussianMLPPolicy(39, 4, hidden_sizes=(16,))
        tasks = ML10.sample_tasks(6, "train", seed=1)  # six skills
        params = expand_params({k: v.detach() for k, v in policy.named_parameters()}, 6)
        env_fn = sampler_env_fn("MetaWorldML10", horizon=15)
        with LocalSampler(env_fn, policy) as local, RaySampler(env_fn, policy, workers=2) as remote:
            assert_identical(
                local.sample(tasks, params, 2, seed=5), remote.sample(tasks, params, 2, seed=5)
            )
        on_ray = training.train(
            replace(TINY_ML10, backend="ray", workers=2), tmp_path, progress=False
        )
        trained_on_ray = final_params(on_ray)
        on_ray.close()
    finally:
        ray.shutdown()
    parts, _ = load_run(run_dir)
    parts.close()
    for name, value in final_params(parts).items():
        assert torch.equal(value, trained_on_ray[name]), name


def test_group_summary_weighs_groups_alike_with_a_stratified_ci():
    tasks = [Task("Family", "test", i, ()) for i in range(5)]
    success = np.array([[0, 0, 0, 0, 0], [1, 1, 0, 0, 1]], dtype=np.float64)
    result = AdaptationResult(
        tasks, success * 10, success, 3, "x", groups=("a", "a", "a", "b", "b")
    )
    a, b, mean = result.group_summary()
    assert (a["group"], a["tasks"], a["success_mean"]) == ("a", 3, pytest.approx(2 / 3))
    assert (b["group"], b["tasks"], b["success_mean"]) == ("b", 2, 0.5)
    assert mean["success_mean"] == pytest.approx((2 / 3 + 0.5) / 2)  # not 3/5
    ci_a = Z_95 * np.std([1, 1, 0], ddof=1) / np.sqrt(3)
    ci_b = Z_95 * np.std([0, 1], ddof=1) / np.sqrt(2)
    assert mean["success_ci95"] == pytest.approx(np.hypot(ci_a, ci_b) / 2)
    assert "| b | 2 | 0.500 ±" in result.table()


def test_metaworld_protocol_is_refused_for_other_families(tmp_path, capsys):
    training.train(replace(TINY, iterations=1), tmp_path, progress=False).close()
    assert main(["evaluate", str(tmp_path), "--protocol", "metaworld"]) == 2
    assert "PointNav2D is not one: use --protocol maml" in capsys.readouterr().err
