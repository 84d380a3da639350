import pytest

import envs
from envs.base import MetaEnv
from envs.manipulation.metaworld_ml1 import ML1_FAMILIES
from metarobot.tasks import Task

FAMILY_NAMES = list(envs.FAMILIES)

# The contract tests run on three of Meta-World's 50 ML1 families, which differ only in Meta-World's
# own code: the other 47 would add minutes to CI (test_metaworld_ml1.py runs the checkers and
# determinism on every one).
ML1_STAND_INS = ("MetaWorldReach", "MetaWorldPush", "MetaWorldPickPlace")
CONTRACT_FAMILY_NAMES = [
    name
    for name in FAMILY_NAMES
    if name in ML1_STAND_INS or name not in {family.name for family in ML1_FAMILIES}
]


@pytest.fixture(params=CONTRACT_FAMILY_NAMES)
def family_name(request: pytest.FixtureRequest) -> str:
    return request.param


def first_task(name: str, split: str = "train") -> Task:
    return envs.get_family(name).sample_tasks(1, split, seed=0)[0]


def make_with_task(name: str, **kwargs) -> MetaEnv:
    return envs.make(name, task=first_task(name), **kwargs)
