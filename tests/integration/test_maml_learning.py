"""Real learning on CPU: MAML meta-trained on PointNav2D adapts to unseen goals.

One adaptation step on 20 unseen goals, against the unadapted policy and against the same step
from checkpoint 0 (the untrained policy). Margins were several times the CIs for seeds 0-2.
"""

from pathlib import Path

import pytest

from metarobot.run.config import RunConfig
from tests.integration.learning import assert_meta_training_helps

CONFIG = RunConfig(
    family="PointNav2D", iterations=12, meta_batch_size=10, episodes_per_task=10, seed=0
)


@pytest.mark.slow
def test_maml_adapts_to_unseen_goals(tmp_path: Path) -> None:
    assert_meta_training_helps(CONFIG, {}, 1, tmp_path / "run")
