"""All 50 ML1 families: Meta-World's skills, its task sets, the env checkers and determinism.

Parametrized over every ML1 family and kept cheap (a few steps each): the contract tests of
tests/envs run on three of them only. Needs the ``metaworld`` extra (see test_metaworld.py).
"""

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.manipulation.metaworld_ml1 import ML1_FAMILIES
from envs.manipulation.metaworld_tasks import SKILLS, skill_index
from tests.envs.conftest import numeric_info_keys
from tests.envs.test_metaworld import needs_metaworld

pytestmark = needs_metaworld
ML1_NAMES = [family.name for family in ML1_FAMILIES]


def test_skills_are_metaworlds_in_its_order():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert [skill.env_name for skill in SKILLS] == list(ALL_V3_ENVIRONMENTS)
    assert [family.env_name for family in ML1_FAMILIES] == list(ALL_V3_ENVIRONMENTS)
    assert ML1_NAMES[:3] == ["MetaWorldAssembly", "MetaWorldBasketball", "MetaWorldBinPicking"]
    assert "MetaWorldButtonPressTopdownWall" in envs.FAMILIES
    assert skill_index("pick-place-v3") == 30
    with pytest.raises(ValueError, match=r"unknown Meta-World skill 'pick-v3'.*reach-v3"):
        skill_index("pick-v3")


def rollout(env: gym.Env, task, seed: int) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed, options={"task": task})
    actions = np.random.default_rng(seed).uniform(-1, 1, (10, 4))
    steps = [env.step(action) for action in actions]
    for step in steps:  # the info keys its skill reports are those declared for every skill
        assert numeric_info_keys(step[4]) == set(env.unwrapped.info_keys)
    return np.array([obs] + [s[0] for s in steps]), np.array([s[1] for s in steps])


def check_family(name: str) -> None:
    """Disjoint splits, Gymnasium's and SB3's env checkers, and a seeded rollout repeated alike.

    Building the env also checks the declared ranges of its skills against Meta-World's.
    """
    family = envs.get_family(name)
    train, test = family.benchmark_tasks("train"), family.benchmark_tasks("test")
    assert len(train) == 50 * len(family.skills("train"))
    assert len(test) == 50 * len(family.skills("test"))
    assert {t.params for t in train}.isdisjoint({t.params for t in test})
    env = gym.make(f"metarobot/{name}-v0")
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env, warn=False)
    first, again = rollout(env, test[0], seed=3), rollout(env, test[0], seed=3)
    for ours, theirs in zip(first, again, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(first[0][0], rollout(env, test[0], seed=4)[0][0])  # hand noise
    env.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ML1_NAMES)
def test_every_ml1_family_passes_the_checkers_and_is_deterministic(name):
    check_family(name)


@pytest.mark.expensive
@pytest.mark.parametrize("name", ML1_NAMES)
def test_every_ml1_familys_sets_are_metaworlds(name):
    """A minute of Meta-World's own draws; test_metaworld.py checks three families in CI."""
    import metaworld

    family = envs.get_family(name)
    ml1 = metaworld.ML1(family.env_name, seed=42)
    for split, theirs in (("train", ml1.train_tasks), ("test", ml1.test_tasks)):
        expected = [pickle.loads(t.data)["rand_vec"] for t in theirs]
        actual = [family.vector_of(t) for t in family.benchmark_tasks(split)]
        np.testing.assert_array_equal(actual, expected)
