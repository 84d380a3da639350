"""Contract tests run on every registered family."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from tests.envs.conftest import FAMILY_NAMES, first_task, make_with_task, numeric_info_keys


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gymnasium_and_sb3_check_env_on_the_plainly_made_env(family_name):
    env = gym.make(f"metarobot/{family_name}-v0")
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env, warn=False)


def test_module_prefix_make_imports_envs():
    env = gym.make("envs:metarobot/HalfCheetahVel-v0", task=first_task("HalfCheetahVel"))
    assert env.spec is not None and env.spec.max_episode_steps == 200


def test_horizon_defaults_and_override():
    assert gym.make("metarobot/PointNav2D-v0").spec.max_episode_steps == 100
    env = gym.make("metarobot/PointNav2D-v0", max_episode_steps=7, task=first_task("PointNav2D"))
    env.reset(seed=0)
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 7
    assert envs.make("AntGoal", horizon=50).horizon == 50


def rollout(env, task, seed: int, steps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed, options={"task": task})
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, *env.action_space.shape))
    observations, rewards = [obs], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards)


def test_determinism(family_name):
    task = first_task(family_name)
    a = rollout(envs.make(family_name), task, seed=5)
    b = rollout(envs.make(family_name), task, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = rollout(envs.make(family_name), task, seed=6)
    assert not np.array_equal(a[0][0], c[0][0])


def test_reward_terms_add_up_and_info_has_task(family_name):
    env = make_with_task(family_name)
    env.reset(seed=0)
    for action in np.random.default_rng(0).uniform(-1, 1, (20, *env.action_space.shape)):
        _, reward, terminated, _, info = env.step(action)
        terms = [v for k, v in info.items() if k.startswith("reward_")]
        assert terms, info
        assert reward == pytest.approx(sum(terms), abs=1e-12)
        assert info["task"] == env.task and info["unstable"] is False
        if terminated:
            break


def test_steps_report_exactly_the_declared_info_keys(family_name):
    """Samplers record the declared keys and refuse other numbers; none may be stale either."""
    env = make_with_task(family_name)
    env.reset(seed=0)
    reported = set()
    for action in np.random.default_rng(0).uniform(-1, 1, (20, *env.action_space.shape)):
        _, _, terminated, _, info = env.step(action)
        reported |= numeric_info_keys(info)
        if terminated:
            break
    assert reported == set(env.info_keys)


def test_changing_task_changes_reward_or_dynamics(family_name):
    family = envs.get_family(family_name)
    first, second = family.sample_tasks(2, "train", seed=0)
    if first.params == second.params:  # fixed-task family: the two are the two fixed tasks
        first, second = family.sample_tasks(2, "test", seed=0)
    a = rollout(envs.make(family_name), first, seed=0, steps=15)
    b = rollout(envs.make(family_name), second, seed=0, steps=15)
    assert not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))


def test_every_family_is_registered_and_listed():
    ids = {spec_id for spec_id in gym.registry if spec_id.startswith("metarobot/")}
    assert ids == {f"metarobot/{name}-v0" for name in FAMILY_NAMES}


def test_rgb_array_rendering(family_name):
    env = envs.make(
        family_name, task=first_task(family_name), render_mode="rgb_array", width=64, height=48
    )
    env.reset(seed=0)
    frame = env.render()
    env.close()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert frame.std() > 1.0  # not a blank image
