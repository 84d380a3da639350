"""The Meta-World ML1 adapter: Meta-World's own tasks, envs and scripted policies, typed.

These tests need the ``metaworld`` extra, which pins mujoco 3.3.0 and so lives in a virtual
environment of its own; elsewhere they are skipped, and only the missing-extra message is checked.
The generic contract (check_env, determinism, rewards, rendering) runs on three ML1 families and
on ML10 and ML45 through tests/envs/test_families.py wherever they are registered;
test_metaworld_ml1.py checks all 50 ML1 families, test_metaworld_multi.py ML10 and ML45.
"""

import pickle
import warnings

import numpy as np
import pytest

import envs
from envs.manipulation.metaworld_ml1 import METAWORLD_FAMILIES, metaworld_installed
from metarobot.rendering.scene import Stage

NAMES = ["MetaWorldReach", "MetaWorldPush", "MetaWorldPickPlace"]
needs_metaworld = pytest.mark.skipif(
    not metaworld_installed(),
    reason="Meta-World is not installed (pip install 'metarobot[metaworld]' in a virtual "
    "environment with mujoco 3.3, which Meta-World pins)",
)


@pytest.mark.skipif(metaworld_installed(), reason="the metaworld extra is installed here")
def test_missing_extra_is_explained():
    assert len(METAWORLD_FAMILIES) == 52
    assert not {family.name for family in METAWORLD_FAMILIES} & set(envs.FAMILIES)
    with pytest.raises(
        ValueError, match=r"MetaWorldPickPlace.*pip install 'metarobot\[metaworld\]'"
    ):
        envs.make("MetaWorldPickPlace")
    with pytest.raises(ValueError, match=r"MetaWorldML45.*pip install 'metarobot\[metaworld\]'"):
        envs.get_family("MetaWorldML45")


@needs_metaworld
@pytest.mark.parametrize("name", NAMES)
def test_benchmark_tasks_are_metaworlds_ml1_tasks(name):
    import metaworld

    family = envs.get_family(name)
    ml1 = metaworld.ML1(family.env_name, seed=42)
    for split, theirs in (("train", ml1.train_tasks), ("test", ml1.test_tasks)):
        ours = family.benchmark_tasks(split)
        assert [t.split for t in ours] == [split] * 50
        expected = [pickle.loads(t.data)["rand_vec"] for t in theirs]
        actual = [[t.scalar(p) for p in family.param_names] for t in ours]
        np.testing.assert_array_equal(actual, expected)
    train, test = family.benchmark_tasks("train"), family.benchmark_tasks("test")
    assert {t.params for t in train}.isdisjoint({t.params for t in test})


@needs_metaworld
def test_sampling_draws_from_the_split_set_and_refuses_other_tasks():
    family = envs.get_family("MetaWorldPush")
    test_set = {t.params for t in family.benchmark_tasks("test")}
    draw = family.sample_tasks(120, "test", seed=3)
    assert {t.params for t in draw[:50]} == test_set  # each task once per pass
    assert {t.params for t in draw} == test_set
    assert family.sample_tasks(7, "test", seed=3) == draw[:7]
    assert family.sample_tasks(7, "test", seed=4) != draw[:7]
    assert all(family.split_of(dict(t.params)) == "test" for t in draw)
    params = dict(draw[0].params) | {"goal_x": 0.0}
    with pytest.raises(ValueError, match="not one of Meta-World's ML1 tasks for push-v3"):
        family.make_task(**params)
    with pytest.raises(ValueError, match=r"goal_z = 0.5 is out of range \[0.01, 0.02\]"):
        family.make_task(**params | {"goal_z": 0.5})


@needs_metaworld
@pytest.mark.parametrize("name", NAMES)
def test_metaworlds_scripted_policies_solve_tasks_through_the_adapter(name):
    from metaworld import policies

    policy_class = {
        "MetaWorldReach": policies.SawyerReachV3Policy,
        "MetaWorldPush": policies.SawyerPushV3Policy,
        "MetaWorldPickPlace": policies.SawyerPickPlaceV3Policy,
    }[name]
    policy = policy_class()
    env = envs.make(name, observe_goal=True, horizon=150)
    successes = []
    for seed, task in enumerate(envs.get_family(name).benchmark_tasks("test")[:5]):
        obs, _ = env.reset(seed=seed, options={"task": task})
        success = False
        for _ in range(150):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "constants may be too high"
                action = policy.get_action(obs)
            obs, _, _, _, info = env.step(action)
            success |= info["success"]
        successes.append(success)
    assert np.mean(successes) >= 0.8


@needs_metaworld
def test_adapter_reproduces_metaworld_exactly_without_hand_noise():
    import metaworld

    family = envs.get_family("MetaWorldPickPlace")
    ml1 = metaworld.ML1("pick-place-v3", seed=42)
    theirs = ml1.train_classes["pick-place-v3"]()
    theirs.set_task(ml1.test_tasks[4])
    ours = envs.make("MetaWorldPickPlace", hand_noise=0.0)
    their_obs, _ = theirs.reset()
    our_obs, _ = ours.reset(seed=0, options={"task": family.benchmark_tasks("test")[4]})
    np.testing.assert_array_equal(our_obs, their_obs)
    np.testing.assert_array_equal(our_obs[-3:], 0.0)  # the goal is hidden
    for action in np.random.default_rng(0).uniform(-1, 1, (20, 4)):
        their_obs, their_reward, *_ = theirs.step(action)
        our_obs, our_reward, _, _, info = ours.step(action)
        np.testing.assert_array_equal(our_obs, their_obs)
        assert our_reward == info["reward_metaworld"] == their_reward


@needs_metaworld
def test_goal_can_be_observed_and_seeds_jitter_the_hand():
    family = envs.get_family("MetaWorldReach")
    task = family.benchmark_tasks("test")[0]
    env = envs.make("MetaWorldReach", task=task, observe_goal=True)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[-3:], [task.scalar(f"goal_{a}") for a in "xyz"])
    again, _ = env.reset(seed=0)
    other, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs, again)
    assert 0 < np.abs(obs[:3] - other[:3]).max() < 0.011


@needs_metaworld
def test_films_show_the_goal_that_meta_worlds_site_marks():
    task = envs.get_family("MetaWorldPickPlace").sample_tasks(1, "test", seed=1000)[0]
    stage = Stage("MetaWorldPickPlace", task, 320, 240)
    try:
        stage.reset(seed=0)
        frame = stage.render().astype(int)
    finally:
        stage.close()
    r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
    assert ((b > 150) & (b - r > 80) & (b - g > 80)).sum() > 25  # the blue goal sphere
