"""Fixtures shared by the sampling tests: the tiny env's policy and samplers."""

from __future__ import annotations

from typing import Any

import pytest

from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import LocalSampler
from tests.metarobot.sampling.tiny import PROCESS_BACKENDS, TinyEnv, make_policy


@pytest.fixture(scope="module")
def policy() -> GaussianMLPPolicy:
    return make_policy()


@pytest.fixture(scope="module")
def local(policy: GaussianMLPPolicy) -> Any:
    with LocalSampler(TinyEnv, policy) as sampler:
        yield sampler


@pytest.fixture(scope="module", params=PROCESS_BACKENDS)
def process(request: pytest.FixtureRequest, policy: GaussianMLPPolicy) -> Any:
    with request.param(TinyEnv, policy, workers=2) as sampler:
        yield sampler
