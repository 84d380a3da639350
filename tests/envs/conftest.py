import pytest

import envs
from envs.base import MetaEnv
from envs.manipulation.metaworld_ml1 import METAWORLD_FAMILIES
from metarobot.sampling.environments import as_number
from metarobot.tasks import Task

FAMILY_NAMES = list(envs.FAMILIES)

# The contract tests run on three of Meta-World's 50 ML1 families and on ML10, which stand in for
# the others (they differ only in Meta-World's own code) and keep CI minutes shorter:
# test_metaworld_ml1.py runs the checkers and determinism on every ML1 family, and
# test_metaworld_multi.py on ML45.
METAWORLD_STAND_INS = ("MetaWorldReach", "MetaWorldPush", "MetaWorldPickPlace", "MetaWorldML10")
CONTRACT_FAMILY_NAMES = [
    name
    for name in FAMILY_NAMES
    if name in METAWORLD_STAND_INS or name not in {family.name for family in METAWORLD_FAMILIES}
]


@pytest.fixture(params=CONTRACT_FAMILY_NAMES)
def family_name(request: pytest.FixtureRequest) -> str:
    return request.param


def first_task(name: str, split: str = "train") -> Task:
    return envs.get_family(name).sample_tasks(1, split, seed=0)[0]


def make_with_task(name: str, **kwargs) -> MetaEnv:
    return envs.make(name, task=first_task(name), **kwargs)


def numeric_info_keys(info: dict[str, object]) -> set[str]:
    """The entries of ``info`` that samplers record, so that the env must declare them."""
    numbers = {key for key, value in info.items() if as_number(value) is not None}
    return numbers - {"unstable"}
