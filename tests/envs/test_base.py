"""``envs.base``: what every family shares, here MuJoCo's compiler warnings."""

import warnings

import gymnasium as gym
import mujoco
import pytest

import envs  # noqa: F401  (registers the families)
from envs.base import known_compiler_warnings_dropped

SETTOTALMASS = (
    "compiler attribute 'settotalmass' is deprecated and will be removed in a future release"
)


def test_building_a_half_cheetah_prints_and_logs_no_deprecation(capfd, tmp_path, monkeypatch):
    # mujoco 4 warns about Gymnasium's half_cheetah.xml on every compile (3.x never does).
    monkeypatch.chdir(tmp_path)
    env = gym.make("metarobot/HalfCheetahVel-v0")
    env.reset(seed=0)
    env.close()
    assert "settotalmass" not in capfd.readouterr().err
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_only_the_known_warning_is_dropped_and_the_handler_is_restored():
    before = mujoco.get_mju_user_warning()
    with pytest.warns(RuntimeWarning, match="MuJoCo: something else"):
        with known_compiler_warnings_dropped():
            mujoco.get_mju_user_warning()(SETTOTALMASS)
            mujoco.get_mju_user_warning()("something else")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with known_compiler_warnings_dropped():
            mujoco.get_mju_user_warning()(SETTOTALMASS)
    assert mujoco.get_mju_user_warning() is before


def test_another_handler_gets_the_other_warnings():
    received: list[str] = []
    mujoco.set_mju_user_warning(received.append)
    try:
        with known_compiler_warnings_dropped():
            mujoco.get_mju_user_warning()(SETTOTALMASS)
            mujoco.get_mju_user_warning()("something else")
    finally:
        mujoco.set_mju_user_warning(None)
    assert received == ["something else"]
