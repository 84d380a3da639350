import pytest

import envs
from envs.base import MetaEnv
from metarobot.tasks import Task

FAMILY_NAMES = list(envs.FAMILIES)


@pytest.fixture(params=FAMILY_NAMES)
def family_name(request: pytest.FixtureRequest) -> str:
    return request.param


def first_task(name: str, split: str = "train") -> Task:
    return envs.get_family(name).sample_tasks(1, split, seed=0)[0]


def make_with_task(name: str, **kwargs) -> MetaEnv:
    return envs.make(name, task=first_task(name), **kwargs)
