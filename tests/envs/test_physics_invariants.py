"""Physics invariants of the families, and in-place model changes that restore bit for bit."""

import copy

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs
from envs.physics import HOPPER_FIELDS, WALKER2D_FIELDS
from tests.envs.conftest import first_task, make_with_task


def model_arrays(model: mujoco.MjModel) -> dict[str, bytes]:
    arrays = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        try:
            value = getattr(model, name)
        except Exception:  # some attributes are not readable on every build
            continue
        if isinstance(value, np.ndarray):
            arrays[name] = value.tobytes()
    return arrays


def test_ant_vel_reward_is_the_maml_papers():
    """1 - |v - v_target| plus the paper's survive reward 0.05 and control cost 0.005 |a|^2."""
    env = envs.make("AntVel", task=envs.get_family("AntVel").make_task(velocity=2.5))
    env.reset(seed=0)
    for action in np.random.default_rng(3).uniform(-1, 1, (5, 8)):
        x_before = env.data.body("torso").xpos[0]
        _, reward, _, _, info = env.step(action)
        velocity = (env.data.body("torso").xpos[0] - x_before) / env.dt
        assert info["reward_forward"] == pytest.approx(1.0 - abs(velocity - 2.5), abs=1e-9)
        assert info["reward_ctrl"] == pytest.approx(-0.005 * float(action @ action))
        assert info["reward_survive"] == 0.05
        assert reward == pytest.approx(
            info["reward_forward"] + 0.05 + info["reward_ctrl"] + info["reward_contact"]
        )


@pytest.mark.parametrize("name", ["HalfCheetahVel", "HalfCheetahDir"])
def test_cheetah_x_velocity_is_finite_difference(name):
    env = make_with_task(name)
    env.reset(seed=0)
    for action in np.random.default_rng(1).uniform(-1, 1, (10, 6)):
        x_before = env.data.qpos[0]
        _, _, _, _, info = env.step(action)
        assert info["x_velocity"] == pytest.approx((env.data.qpos[0] - x_before) / env.dt)
        assert info["x_position"] == env.data.qpos[0]


def test_cheetah_vel_reward_is_minus_speed_error():
    family = envs.get_family("HalfCheetahVel")
    task = family.make_task(velocity=1.5)
    env = envs.make("HalfCheetahVel", task=task)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(6))
    assert info["reward_forward"] == pytest.approx(-abs(info["x_velocity"] - 1.5))
    assert info["reward_ctrl"] == 0.0


def test_ant_dir_reward_projects_velocity_on_direction():
    family = envs.get_family("AntDir")
    env = envs.make("AntDir", task=family.make_task(direction=np.pi / 2))
    env.reset(seed=0)
    for action in np.random.default_rng(2).uniform(-1, 1, (5, 8)):
        y_before = env.data.body("torso").xpos[1]
        _, _, _, _, info = env.step(action)
        assert info["reward_forward"] == pytest.approx(
            (env.data.body("torso").xpos[1] - y_before) / env.dt, abs=1e-9
        )


@pytest.mark.parametrize("name", ["PointNav2D", "AntGoal"])
def test_goal_families_reward_minus_distance_and_success(name):
    env = make_with_task(name)
    env.reset(seed=0)
    goal = env.task.vector("goal")
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    position = env.data.qpos[:2]
    assert info["distance"] == pytest.approx(np.linalg.norm(position - goal))
    assert info["success"] == (info["distance"] < env._success_radius)


def test_point_nav_reaches_goal_with_a_proportional_controller():
    family = envs.get_family("PointNav2D")
    env = envs.make("PointNav2D", task=family.make_task(goal=(0.4, -0.3)))
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        obs, _, _, _, info = env.step(np.clip(5 * (np.array([0.4, -0.3]) - obs[:2]), -1, 1))
    assert info["success"] and info["distance"] < 0.02


def test_point_nav_goal_marker_moves_with_task():
    family = envs.get_family("PointNav2D")
    env = envs.make("PointNav2D", task=family.make_task(goal=(0.3, 0.2)))
    np.testing.assert_allclose(env.model.site("goal").pos[:2], [0.3, 0.2])


@pytest.mark.parametrize(
    ("name", "fields"), [("HopperParams", HOPPER_FIELDS), ("Walker2dParams", WALKER2D_FIELDS)]
)
def test_physics_tasks_change_model_in_place_and_restore_bit_for_bit(name, fields):
    family = envs.get_family(name)
    nominal = family.make_task(**{spec.name: (1.0,) * spec.size for spec in family.specs})
    env = envs.make(name, task=nominal)
    model_id = id(env.model)
    pristine = model_arrays(env.model)
    other = family.sample_tasks(1, "test", seed=0)[0]
    env.set_task(other)
    for field in fields:
        rows = list(field.rows)
        expected = np.asarray(copy.deepcopy(pristine_field(pristine, env, field.param)))[rows]
        multipliers = other.vector(field.param).reshape((-1,) + (1,) * (expected.ndim - 1))
        np.testing.assert_allclose(getattr(env.model, field.param)[rows], expected * multipliers)
    assert model_arrays(env.model) != pristine
    env.set_task(nominal)
    assert id(env.model) == model_id
    assert model_arrays(env.model) == pristine


def pristine_field(pristine: dict[str, bytes], env, field: str) -> np.ndarray:
    current = getattr(env.model, field)
    return np.frombuffer(pristine[field], dtype=current.dtype).reshape(current.shape)


def test_physics_task_changes_dynamics():
    family = envs.get_family("HopperParams")
    heavy = family.make_task(**{s.name: (3.0,) * s.size for s in family.specs})
    light = family.make_task(**{s.name: (0.4,) * s.size for s in family.specs})
    trajectories = []
    for task in (heavy, light):
        env = envs.make("HopperParams", task=task)
        env.reset(seed=0)
        for _ in range(10):
            obs, *_ = env.step(np.ones(3))
        trajectories.append(obs)
    assert not np.allclose(trajectories[0], trajectories[1], atol=1e-3)


def test_first_task_helper_is_train():
    assert first_task("AntGoal").split == "train"


@pytest.mark.parametrize(
    ("name", "params", "reference", "kwargs"),
    [
        ("HopperParams", None, "Hopper-v5", {}),
        ("Walker2dParams", None, "Walker2d-v5", {}),
        ("AntDir", {"direction": 0.0}, "Ant-v5", {}),
        (
            "AntFwdBack",
            {"direction": 1.0},
            "Ant-v5",
            {"healthy_reward": 1.0, "ctrl_cost_weight": 0.5},
        ),
        ("HalfCheetahDir", {"direction": 1.0}, "HalfCheetah-v5", {"ctrl_cost_weight": 0.1}),
    ],
)
def test_lean_steps_are_gymnasiums_own_where_the_task_asks_the_same(
    name, params, reference, kwargs
):
    """Families compute Gymnasium's v5 step their own, faster way: it must stay the same step."""
    family = envs.get_family(name)
    nominal = {spec.name: (1.0,) * spec.size for spec in family.specs}  # physics unchanged
    ours = envs.make(name, task=family.make_task(**(params or nominal)), **kwargs)
    theirs = gym.make(reference).unwrapped
    np.testing.assert_array_equal(ours.reset(seed=3)[0], theirs.reset(seed=3)[0])
    for action in np.random.default_rng(0).uniform(-1, 1, (100, *ours.action_space.shape)):
        obs, reward, terminated, _, info = ours.step(action)
        expected_obs, expected_reward, expected_terminated, _, expected_info = theirs.step(action)
        np.testing.assert_array_equal(obs, expected_obs)
        assert reward == pytest.approx(expected_reward, rel=1e-12, abs=1e-12)
        assert terminated == expected_terminated
        assert {key: info[key] for key in expected_info} == pytest.approx(
            expected_info, rel=1e-12, abs=1e-12
        )
        if terminated:
            ours.reset()
            theirs.reset()
