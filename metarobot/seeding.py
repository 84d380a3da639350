"""Every seed a run derives from its one ``--seed``, in one place.

A run draws tasks, environment resets, action noise and initial weights from streams derived
from ``(seed, key, ...)`` with NumPy's ``SeedSequence``, so any draw can be repeated from the
integers that name it (a resumed run repeats an iteration from ``(seed, iteration)`` alone).
The keys below name the streams that are not counted by an iteration or a step.
"""

from __future__ import annotations

import numpy as np

INITIAL_WEIGHTS = 0xC0FFEE
"""Key of the stream that initializes a run's policy: ``derive_seed(seed, INITIAL_WEIGHTS)``."""
AGENT_ENVIRONMENTS = 0x5B3
"""Key of the seed of an agent's own environments (multi-task PPO pretrains on them)."""


def derive_seed(*keys: int) -> int:
    """A 32-bit seed from a tuple of integers (run seed, iteration, step, ...)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
