"""With no task given an env draws its own: a plain Gymnasium env first, multi-task by keyword."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import gymnasium as gym
import numpy as np
import pytest

import envs
from tests.envs.conftest import CONTRACT_FAMILY_NAMES


def env_id(name: str) -> str:
    return f"metarobot/{name}-v0"


def seeded_run(name: str, seed: int = 7, steps: int = 5) -> tuple[str, list[list[float]]]:
    """The task (as JSON) and observations of a plainly made env after ``reset(seed=seed)``."""
    env = gym.make(env_id(name))
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations = [obs]
    for _ in range(steps):
        observations.append(env.step(env.action_space.sample())[0])
    env.close()
    return info["task"].to_json(), np.array(observations).tolist()


def test_plain_make_draws_a_train_task_and_keeps_it(family_name):
    env = gym.make(env_id(family_name))
    _, info = env.reset(seed=0)
    task = info["task"]
    assert task.split == "train" and env.unwrapped.task == task
    envs.get_family(family_name).validate(task)  # labelled train and lying in the train region
    for _ in range(3):
        *_, info = env.step(env.action_space.sample())
        assert info["task"] == task
    assert env.reset()[1]["task"] == task  # a single-task env until a new task is set


def test_the_same_seed_gives_the_same_task_and_trajectory_in_another_process():
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        theirs = list(pool.map(seeded_run, CONTRACT_FAMILY_NAMES))
    assert theirs == [seeded_run(name) for name in CONTRACT_FAMILY_NAMES]


def rollout(env: envs.base.MetaEnv, seed: int, **reset) -> np.ndarray:
    observations = [env.reset(seed=seed, **reset)[0]]
    for action in np.random.default_rng(seed).uniform(-1, 1, (5, *env.action_space.shape)):
        observations.append(env.step(action)[0])
    return np.array(observations)


@pytest.mark.parametrize("name", ["HalfCheetahVel", "HopperParams", "Push"])
def test_a_seeded_reset_draws_and_a_drawn_task_runs_as_if_it_were_given(name):
    env = envs.make(name)
    drawn = rollout(env, seed=1)
    first = env.task
    assert env.reset(seed=2)[1]["task"] != first  # a seed alone fixes the task
    second = env.task
    assert env.reset()[1]["task"] == second
    np.testing.assert_array_equal(rollout(env, seed=1), drawn)
    assert env.task == first
    given = rollout(envs.make(name), seed=1, options={"task": first})
    np.testing.assert_array_equal(given, drawn)  # drawing leaves the reset noise untouched


def test_explicit_tasks_win_over_drawing():
    family = envs.get_family("PointNav2D")
    given, other = family.sample_tasks(2, "test", seed=0)
    env = envs.make("PointNav2D", task=given, resample_tasks=True)
    assert env.reset(seed=0)[1]["task"] == given  # the constructor's task, seeded or not
    assert env.reset()[1]["task"].split == "train"  # then drawing resumes
    env.set_task(other)
    assert env.reset(seed=3)[1]["task"] == other
    assert env.reset(options={"task": given})[1]["task"] == given
    single = envs.make("PointNav2D", task=given)
    assert [single.reset(seed=seed)[1]["task"] for seed in (None, 1, 2)] == [given] * 3


@pytest.mark.parametrize("split", ["train", "test"])
def test_resampling_draws_new_tasks_of_the_chosen_split_only(family_name, split):
    family = envs.get_family(family_name)
    env = gym.make(env_id(family_name), task_split=split, resample_tasks=True)
    tasks = [env.reset(seed=0 if episode == 0 else None)[1]["task"] for episode in range(12)]
    for task in tasks:
        assert task.split == split
        family.validate(task)  # raises for parameters in the other split's region
    assert len({task.params for task in tasks}) > 1
    assert [env.reset(seed=0)[1]["task"], env.reset()[1]["task"]] == tasks[:2]
