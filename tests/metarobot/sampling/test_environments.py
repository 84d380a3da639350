"""The env contract: environments built once, and the info keys an env declares."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from metarobot.policies import GaussianMLPPolicy
from metarobot.sampling import LocalSampler, Sampler
from metarobot.sampling.environments import describe_env
from tests.metarobot.sampling.tiny import (
    PROCESS_BACKENDS,
    TASKS,
    TinyEnv,
    assert_identical,
    task_params,
)


def test_environments_are_created_once_and_reused(policy: GaussianMLPPolicy) -> None:
    created: list[TinyEnv] = []

    def env_fn() -> TinyEnv:
        created.append(TinyEnv())
        return created[-1]

    with LocalSampler(env_fn, policy) as sampler:
        sampler.sample(TASKS[:2], task_params(policy, 2), episodes_per_task=2, seed=0)
        assert len(created) == 4
        sampler.sample(TASKS[2:], task_params(policy, 2), episodes_per_task=1, seed=0)
        assert len(created) == 4
        sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=2, seed=0)
        assert len(created) == 8
    for backend in PROCESS_BACKENDS:
        with pytest.raises(ValueError, match="cannot be pickled"):
            backend(env_fn, policy)


class ExtraKeyEnv(TinyEnv):
    """Reports a number, ``surprise``, that its ``info_keys`` do not declare."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "surprise": 1.5}


class TextSuccessEnv(TinyEnv):
    """Reports its declared ``success`` as text."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "success": "yes"}


class UnusedKeyEnv(TinyEnv):
    """Declares a key, ``contact``, that none of its steps reports."""

    info_keys = ("contact", *TinyEnv.info_keys)


class UndeclaredEnv(TinyEnv):
    info_keys = None


def test_spec_holds_the_declared_info_keys_sorted(local: Sampler) -> None:
    assert local.env_spec.info_keys == ("applied_0", "applied_1", "late", "reward_dist", "success")
    assert describe_env(UnusedKeyEnv()).info_keys[:2] == ("applied_0", "applied_1")


@pytest.mark.parametrize(
    ("env_class", "message"),
    [
        (UndeclaredEnv, r"UndeclaredEnv.info_keys must be a tuple of the numeric info keys"),
        (type("Twice", (TinyEnv,), {"info_keys": ("late", "late")}), "name each key once"),
        (type("Own", (TinyEnv,), {"info_keys": ("unstable",)}), "not 'unstable'"),
    ],
)
def test_an_env_must_declare_its_info_keys(
    policy: GaussianMLPPolicy, env_class: type, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        LocalSampler(env_class, policy)


def test_an_undeclared_numeric_info_key_is_an_error(policy: GaussianMLPPolicy) -> None:
    """Not silently recorded (nor dropped): the message names the key and where to declare it."""
    expected = r"ExtraKeyEnv reported the numeric info\['surprise'\] = 1\.5, which its info_keys "
    with LocalSampler(ExtraKeyEnv, policy) as sampler, pytest.raises(TypeError, match=expected):
        sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)
    for backend in PROCESS_BACKENDS:
        with backend(ExtraKeyEnv, policy, workers=2) as sampler:
            with pytest.raises(RuntimeError, match=r"add 'surprise' to ExtraKeyEnv\.info_keys"):
                sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)
    with LocalSampler(TextSuccessEnv, policy) as sampler:
        with pytest.raises(TypeError, match=r"info\['success'\] = 'yes'; .* must be a number"):
            sampler.sample(TASKS, task_params(policy, 4), episodes_per_task=1, seed=0)


def test_declared_keys_are_recorded_even_if_never_reported(policy: GaussianMLPPolicy) -> None:
    """The infos are allocated from the declaration, so every call has the same keys."""
    params = task_params(policy, 4)
    with LocalSampler(TinyEnv, policy) as tiny, LocalSampler(UnusedKeyEnv, policy) as unused:
        expected = tiny.sample(TASKS, params, episodes_per_task=2, seed=3)
        episodes = unused.sample(TASKS, params, episodes_per_task=2, seed=3)
    keys = ["applied_0", "applied_1", "contact", "late", "reward_dist", "success"]
    assert list(episodes.infos) == keys
    assert episodes.infos.pop("contact").eq(0).all()
    assert_identical(expected, episodes)
