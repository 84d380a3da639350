"""Shared check of the learning tests: meta-training makes adaptation to unseen goals better.

The reference is the same adaptation from the untrained policy (checkpoint 0 of the same run:
identical initial weights), evaluated on the same test tasks with the same seeds.
"""

from pathlib import Path
from typing import Any

import metarobot.run.training as training
from metarobot.evaluation import evaluate_adaptation
from metarobot.run.config import RunConfig
from metarobot.run.directory import load_run


def adaptation(run_dir: Path, checkpoint: int | None, steps: int) -> list[dict[str, float]]:
    """Return after 0..steps adaptation rounds on 20 unseen goals, as evaluation summary rows."""
    parts, _ = load_run(run_dir, checkpoint=checkpoint)
    tasks = parts.family.sample_tasks(20, "test", seed=123)
    try:
        result = evaluate_adaptation(parts.agent, parts.sampler, tasks, steps, rollouts=10, seed=7)
    finally:
        parts.close()
    return result.summary()


def assert_meta_training_helps(
    config: RunConfig, agent_config: dict[str, Any], steps: int, run_dir: Path
) -> None:
    """Adapted return beats the unadapted one, and the untrained agent's, beyond the 95% CIs."""
    training.train(config, run_dir, agent_config, progress=False).close()
    trained = adaptation(run_dir, checkpoint=None, steps=steps)
    untrained = adaptation(run_dir, checkpoint=0, steps=steps)

    after = trained[steps]
    for name, reference in (("unadapted", trained[0]), ("untrained", untrained[steps])):
        margin = after["return_mean"] - reference["return_mean"]
        ci = after["return_ci95"] + reference["return_ci95"]
        assert margin > ci, f"adapted vs {name}: margin {margin:.2f} <= CIs {ci:.2f}"
