"""Real learning on CPU: a LEO latent policy meta-trained on PointNav2D adapts to unseen goals.

Same protocol as the Reptile test: one adaptation round (encoder, latent steps, fine-tuning) on
unseen goals, against the unadapted policy and against checkpoint 0. A small latent suits a 2D
goal, and the outer and latent step sizes are raised from LEO's few-shot-classification values
for a short CPU run; checked to pass with seeds 0 and 1.
"""

from pathlib import Path

import pytest

from metarobot.run.config import RunConfig
from tests.integration.learning import assert_meta_training_helps

CONFIG = RunConfig(
    family="PointNav2D",
    agent="leo",
    iterations=12,
    meta_batch_size=10,
    episodes_per_task=10,
    seed=0,
)
AGENT = {"latent_dim": 8, "outer_lr": 3e-3, "inner_lr_init": 10.0}


@pytest.mark.slow
def test_leo_adapts_to_unseen_goals(tmp_path: Path) -> None:
    assert_meta_training_helps(CONFIG, AGENT, 1, tmp_path / "run")
