"""Envs built with ``share_model=True`` share one MjModel, which stays pristine."""

import numpy as np
import pytest

import envs
from tests.envs.conftest import FAMILY_NAMES
from tests.envs.test_physics_invariants import model_arrays

SHARABLE = [name for name in FAMILY_NAMES if envs.env_class(name).can_share_model]
NOT_SHARABLE = [name for name in FAMILY_NAMES if name not in SHARABLE]


def test_the_families_that_may_share_are_the_reward_and_start_state_ones():
    assert {"HalfCheetahVel", "AntDir", "Reach", "PickPlace"} <= set(SHARABLE)
    assert {"PointNav2D", "HopperParams", "Walker2dParams", "PickPlaceParams"} <= set(NOT_SHARABLE)


@pytest.mark.parametrize("name", SHARABLE)
def test_tasks_never_write_a_shared_model(name):
    """What makes sharing safe: setting tasks, resetting and stepping leave the model as built."""
    first = envs.make(name, share_model=True)
    second = envs.make(name, share_model=True)
    assert first.model is second.model
    assert first.data is not second.data
    pristine = model_arrays(first.model)
    rng = np.random.default_rng(0)
    for env, task in zip(
        (first, second, first), envs.get_family(name).sample_tasks(3, "test", seed=1), strict=True
    ):
        env.set_task(task)
        env.reset(seed=0)
        for _ in range(5):
            env.step(rng.uniform(env.action_space.low, env.action_space.high))
    assert model_arrays(first.model) == pristine


@pytest.mark.parametrize("name", ["HalfCheetahVel", "AntGoal", "Push"])
def test_sharing_a_model_gives_the_same_episodes_bit_for_bit(name):
    tasks = envs.get_family(name).sample_tasks(2, "train", seed=0)
    own = [envs.make(name, task=task) for task in tasks]
    shared = [envs.make(name, task=task, share_model=True) for task in tasks]
    actions = np.random.default_rng(1).uniform(-1.0, 1.0, size=(20, own[0].action_space.shape[0]))
    for i, (mine, theirs) in enumerate(zip(own, shared, strict=True)):
        np.testing.assert_array_equal(mine.reset(seed=i)[0], theirs.reset(seed=i)[0])
    for action in actions:
        # The shared-model envs step in turn, as a sampler steps them.
        for mine, theirs in zip(own, shared, strict=True):
            obs, reward, *_ = mine.step(action)
            shared_obs, shared_reward, *_ = theirs.step(action)
            np.testing.assert_array_equal(obs, shared_obs)
            assert reward == shared_reward


def test_envs_built_without_sharing_keep_their_own_model():
    shared = envs.make("HalfCheetahVel", share_model=True)
    assert envs.make("HalfCheetahVel").model is not shared.model


@pytest.mark.parametrize("name", NOT_SHARABLE)
def test_families_whose_tasks_change_the_model_refuse_to_share(name):
    with pytest.raises(ValueError, match="cannot share a model") as error:
        envs.make(name, share_model=True)
    assert "HalfCheetahVel" in str(error.value)  # names the families that can
