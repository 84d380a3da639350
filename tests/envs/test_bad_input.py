"""Bad input gets a clear error; diverged physics ends the episode with a flag, never NaN."""

import gymnasium as gym
import numpy as np
import pytest

import envs
from tests.envs.conftest import first_task, make_with_task


def test_unknown_family_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown task family 'Cheetah'.*HalfCheetahVel"):
        envs.make("Cheetah")
    with pytest.raises(ValueError, match="PointNav2D"):
        envs.get_family("nope")


def test_unknown_gymnasium_id_is_refused():
    with pytest.raises(gym.error.Error, match="metarobot"):
        gym.make("metarobot/Cheetah-v0")


def test_step_before_the_first_reset_raises(family_name):
    env = envs.make(family_name)
    with pytest.raises(RuntimeError, match=r"has no task yet: call reset\(\) first"):
        env.step(env.action_space.sample())


def test_bad_task_drawing_keywords_name_the_valid_values():
    with pytest.raises(
        ValueError, match=r"task_split must be one of \('train', 'test'\), got 'val'"
    ):
        gym.make("metarobot/PointNav2D-v0", task_split="val")
    with pytest.raises(ValueError, match="resample_tasks must be True or False, got 'yes'"):
        envs.make("PointNav2D", resample_tasks="yes")


def test_task_of_another_family_is_refused():
    env = envs.make("HalfCheetahVel")
    with pytest.raises(ValueError, match="task of family 'AntDir' given to 'HalfCheetahVel'"):
        env.set_task(first_task("AntDir"))


def test_out_of_range_task_names_value_and_range():
    env = envs.make("HalfCheetahVel")
    task = first_task("HalfCheetahVel")
    bad = type(task)(task.family, task.split, 0, (("velocity", 3.5),))
    with pytest.raises(ValueError, match=r"velocity = 3.5 is out of range \[0, 2\]"):
        env.reset(options={"task": bad})
    assert env.task is None  # nothing changed


@pytest.mark.parametrize("action", [np.zeros(5), np.zeros((2, 6)), np.array([np.nan] + [0.0] * 5)])
def test_bad_action_raises_with_expected_shape_and_range(action):
    env = make_with_task("HalfCheetahVel")
    env.reset(seed=0)
    state = env.data.qpos.copy()
    with pytest.raises(ValueError, match=r"expected 6 finite values in \[\[-1.0"):
        env.step(action)
    np.testing.assert_array_equal(env.data.qpos, state)  # the simulation did not advance


def test_task_given_as_dict_or_json_is_accepted():
    task = first_task("AntGoal")
    env = envs.make("AntGoal")
    env.reset(seed=0, options={"task": task.to_dict()})
    assert env.task == task
    env.reset(seed=0, options={"task": task.to_json()})
    assert env.task == task


@pytest.mark.filterwarnings("ignore")
def test_unstable_simulation_truncates_with_flag(family_name):
    env = make_with_task(family_name)
    last_obs, _ = env.reset(seed=0)
    env.data.qvel[:] = 1e20  # diverges on the next step
    obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
    assert truncated and not terminated and info["unstable"] is True
    assert np.isfinite(obs).all() and np.isfinite(reward)
    np.testing.assert_array_equal(obs, last_obs)
    obs, _ = env.reset(seed=1)  # a new episode starts cleanly
    obs, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    assert info["unstable"] is False and np.isfinite(obs).all()
