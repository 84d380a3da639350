"""Vector envs by id alone: Gymnasium's ``make_vec`` and SB3's ``SubprocVecEnv``, for every family.

Each sub-env draws its own task from its own seed, as a single env given that seed does.
"""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import SubprocVecEnv


def env_id(name: str) -> str:
    return f"metarobot/{name}-v0"


def seeded_tasks(name: str, seeds: range) -> list:
    return [gym.make(env_id(name)).reset(seed=seed)[1]["task"] for seed in seeds]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_gives_each_sub_env_the_task_and_start_of_its_seed(family_name, mode):
    singles = [gym.make(env_id(family_name)).reset(seed=seed) for seed in (10, 11)]
    vec = gym.make_vec(env_id(family_name), num_envs=2, vectorization_mode=mode)
    obs, info = vec.reset(seed=10)
    tasks = [info["task"] for _, info in singles]
    assert list(info["task"]) == tasks
    np.testing.assert_array_equal(obs, [obs for obs, _ in singles])
    for _ in range(3):
        obs, _, _, _, info = vec.step(vec.action_space.sample())
    assert np.isfinite(obs).all() and list(info["task"]) == tasks
    vec.close()


def test_sb3_subprocess_workers_know_the_ids_under_the_default_start_method():
    """SB3 starts workers from the forkserver, which imports envs because envs asked it to."""
    vec = make_vec_env(env_id("PointNav2D"), n_envs=2, seed=3, vec_env_cls=SubprocVecEnv)
    vec.reset()
    assert vec.get_attr("task") == seeded_tasks("PointNav2D", range(3, 5))
    vec.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sb3_ppo_learns_over_subprocesses_that_draw_train_tasks(family_name):
    vec = make_vec_env(
        env_id(family_name),
        n_envs=2,
        seed=0,
        vec_env_cls=SubprocVecEnv,
        vec_env_kwargs={"start_method": "fork"},  # fast: the workers need not import torch again
        env_kwargs={"resample_tasks": True},
    )
    vec.reset()
    assert vec.get_attr("task") == seeded_tasks(family_name, range(2))
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.set_logger(Logger(folder=None, output_formats=[]))  # else SB3 leaves a dir in /tmp
    model.learn(256)
    assert model.num_timesteps == 256
    assert all(task.split == "train" for task in vec.get_attr("task"))
    vec.close()
