"""Real learning on CPU: Reptile meta-trained on PointNav2D adapts to unseen goals.

The reference is the same ``k``-round adaptation from the untrained policy (checkpoint 0 of the
same run: identical initial weights), evaluated on the same test tasks with the same seeds. The
hyperparameters are tuned for a short CPU run (the paper's Adam step of 0.001 learns too slowly
for it) and were checked to pass with seeds 0 and 1.
"""

from pathlib import Path

import pytest

from metarobot.run.config import RunConfig
from tests.integration.learning import assert_meta_training_helps

CONFIG = RunConfig(
    family="PointNav2D",
    agent="reptile",
    iterations=10,
    meta_batch_size=10,
    episodes_per_task=10,
    seed=0,
)
AGENT = {"num_inner_steps": 3, "inner_lr": 0.01, "anneal_updates": 10}


@pytest.mark.slow
def test_reptile_adapts_to_unseen_goals(tmp_path: Path) -> None:
    assert_meta_training_helps(CONFIG, AGENT, AGENT["num_inner_steps"], tmp_path / "run")
