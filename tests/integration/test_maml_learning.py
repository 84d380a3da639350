"""Real learning on CPU: MAML meta-trained on PointNav2D adapts to unseen goals.

The reference is the same one-step adaptation from the untrained policy (checkpoint 0 of the
same run: identical initial weights), evaluated on the same test tasks with the same seeds.
"""

import pytest

import metarobot.training as training
from metarobot.config import RunConfig
from metarobot.evaluation import evaluate_adaptation
from metarobot.runs import load_run

CONFIG = RunConfig(
    family="PointNav2D", iterations=12, meta_batch_size=10, episodes_per_task=10, seed=0
)


def adaptation(run_dir, checkpoint):
    parts, _ = load_run(run_dir, checkpoint=checkpoint)
    tasks = parts.family.sample_tasks(20, "test", seed=123)
    try:
        return evaluate_adaptation(parts.agent, parts.sampler, tasks, 1, rollouts=10, seed=7)
    finally:
        parts.close()


@pytest.mark.slow
def test_maml_adapts_to_unseen_goals(tmp_path):
    training.train(CONFIG, tmp_path / "run", progress=False).close()
    trained = adaptation(tmp_path / "run", checkpoint=None).summary()
    untrained = adaptation(tmp_path / "run", checkpoint=0).summary()

    before, after, reference = trained[0], trained[1], untrained[1]
    margin_vs_before = after["return_mean"] - before["return_mean"]
    margin_vs_untrained = after["return_mean"] - reference["return_mean"]
    assert margin_vs_before > after["return_ci95"] + before["return_ci95"], (before, after)
    assert margin_vs_untrained > after["return_ci95"] + reference["return_ci95"], (
        reference,
        after,
    )
