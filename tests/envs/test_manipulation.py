"""The tabletop manipulation families: benchmark sets, oracles, grasps, task effects, errors."""

import math

import mujoco
import numpy as np
import pytest

import envs
from envs.manipulation.controllers import controller_for
from envs.manipulation.families import WORKSPACE_HIGH, vector
from envs.manipulation.object_physics import NOMINAL, OBJECT_FIELDS
from envs.manipulation.tabletop import RewardWeights, closeness
from tests.envs.test_physics_invariants import model_arrays

FAMILIES = ["Reach", "Push", "PickPlace", "PickPlaceParams"]
GRASPING = ["Push", "PickPlace", "PickPlaceParams"]  # their controllers close on the object


@pytest.mark.parametrize("name", FAMILIES)
def test_benchmark_sets_are_fixed_disjoint_and_extendable(name):
    family = envs.get_family(name)
    train, test = family.benchmark_tasks("train"), family.benchmark_tasks("test")
    assert len(train) == len(test) == 50
    assert train == family.benchmark_tasks("train")  # fixed
    assert {t.params for t in train}.isdisjoint({t.params for t in test})
    for split, tasks in (("train", train), ("test", test)):
        assert all(t.split == split == family.split_of(dict(t.params)) for t in tasks)
    assert family.sample_tasks(60, "test", seed=family.benchmark_seed)[:50] == test


def run_controller(env, task, seed, steps):
    """Roll the scripted controller; yields (obs, info) per step."""
    obs, _ = env.reset(seed=seed, options={"task": task})
    controller = controller_for(task)
    for _ in range(steps):
        obs, _, _, _, info = env.step(controller(obs))
        yield obs, info


@pytest.mark.parametrize("name", FAMILIES)
def test_scripted_controller_solves_the_test_tasks_with_a_firm_grasp(name):
    env = envs.make(name)
    successes, worst_penetration, worst_held_penetration, worst_slip = [], 0.0, 0.0, 0.0
    held_steps = 0
    for seed, task in enumerate(envs.get_family(name).benchmark_tasks("test")):
        grip_offset = None
        for obs, info in run_controller(env, task, seed, steps=100):
            penetration = env.finger_penetration()
            worst_penetration = max(worst_penetration, penetration)
            if info.get("grasped") and obs[6] > env.object_rest_height + 0.02:
                # Lifted in the hand: the object must ride with the fingers, not slide or sink.
                offset = obs[4:7] - obs[0:3]
                held_steps += 1
                grip_offset = offset if grip_offset is None else grip_offset
                worst_slip = max(worst_slip, float(np.linalg.norm(offset - grip_offset)))
                worst_held_penetration = max(worst_held_penetration, penetration)
        successes.append(info["success"])
    assert np.mean(successes) >= 0.9
    # Fingertips close fast enough that the first touch dents the object by ~2 mm (rubber pads
    # do); held, it is ~0.1 mm, up to ~1 mm for a heavy, slippery cube carried at full speed
    # (bounds with room for MuJoCo 3.3, whose box-cylinder contacts are a little softer).
    assert worst_penetration < 0.004
    assert worst_held_penetration < 0.0015
    assert worst_slip < 0.005
    assert held_steps > 0 or not name.startswith("PickPlace")


@pytest.mark.parametrize("name", FAMILIES)
def test_random_policy_rarely_succeeds(name):
    env = envs.make(name)
    rng = np.random.default_rng(0)
    successes = []
    for seed, task in enumerate(envs.get_family(name).benchmark_tasks("test")[:20]):
        env.reset(seed=seed, options={"task": task})
        for action in rng.uniform(-1, 1, (150, 4)):
            _, _, _, _, info = env.step(action)
        successes.append(info["success"])
    assert np.mean(successes) <= 0.1


@pytest.mark.parametrize("name", ["PickPlace", "PickPlaceParams"])
def test_object_shapes_are_graspable(name):
    env = envs.make(name, object_shape="cylinder")
    task = envs.get_family(name).benchmark_tasks("test")[0]
    *_, (_, info) = run_controller(env, task, seed=0, steps=100)
    assert info["success"] and info["grasped"]


def test_observation_layout_and_hidden_goal():
    task = envs.get_family("PickPlace").benchmark_tasks("test")[3]
    env = envs.make("PickPlace", task=task)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (11,)
    mujoco.mj_forward(env.model, env.data)
    np.testing.assert_allclose(obs[0:3], env.data.site("tcp").xpos, atol=1e-12)
    assert obs[3] == 1.0  # open
    np.testing.assert_allclose(obs[4:7], env.data.body("object").xpos, atol=1e-12)
    np.testing.assert_allclose(obs[4:6], vector(task, "object", 2))
    np.testing.assert_allclose(obs[7:11], [1, 0, 0, 0])
    seen = envs.make("PickPlace", task=task, observe_goal=True)
    goal_obs, _ = seen.reset(seed=0)
    np.testing.assert_array_equal(goal_obs[:11], obs)
    np.testing.assert_array_equal(goal_obs[11:], vector(task, "goal", 3))
    assert seen.observation_space.shape == (14,)


def test_goal_marker_follows_the_task_and_does_not_collide():
    family = envs.get_family("Reach")
    env = envs.make("Reach")
    for task in family.benchmark_tasks("train")[:3]:
        env.reset(seed=0, options={"task": task})
        mujoco.mj_forward(env.model, env.data)
        np.testing.assert_array_equal(env.data.site("goal").xpos, vector(task, "goal", 3))
    goal_body = env.model.body("goal").id
    assert not any(env.model.geom_bodyid == goal_body)  # a site only: nothing to collide


def test_actions_are_clipped_and_the_hand_stays_in_the_workspace():
    env = envs.make("Reach", task=envs.get_family("Reach").benchmark_tasks("test")[0])
    env.reset(seed=0)
    big = env.step(np.array([5.0, 0.0, 0.0, -1.0]))[0]
    env.reset(seed=0)
    unit = env.step(np.array([1.0, 0.0, 0.0, -1.0]))[0]
    np.testing.assert_array_equal(big, unit)
    for _ in range(80):
        obs, *_ = env.step(np.array([1.0, 1.0, 1.0, 1.0]))
    assert np.all(obs[0:3] < WORKSPACE_HIGH + 0.005)
    assert obs[3] < 0.01  # closed on nothing


def test_reward_terms_follow_their_definitions():
    weights = RewardWeights()
    task = envs.get_family("PickPlace").benchmark_tasks("test")[0]
    env = envs.make("PickPlace", reward_weights=weights)
    seen_grasp = seen_success = False
    for obs, info in run_controller(env, task, seed=0, steps=100):
        hand, obj = obs[0:3], obs[4:7]
        assert info["reward_reach"] == pytest.approx(closeness(math.dist(hand, obj)))
        assert info["reward_grasp"] == (weights.grasp if info["grasped"] else 0.0)
        lifted = info["grasped"] and obj[2] > env.object_rest_height + 0.01
        expected_place = weights.place * closeness(info["distance"]) if lifted else 0.0
        assert info["reward_place"] == pytest.approx(expected_place)
        assert info["reward_success"] == (weights.success if info["success"] else 0.0)
        assert info["success"] == (info["distance"] < 0.05)
        seen_grasp |= info["grasped"]
        seen_success |= info["success"]
    assert seen_grasp and seen_success


def test_push_success_is_planar_and_reach_success_is_the_hand():
    push = envs.make("Push", task=envs.get_family("Push").benchmark_tasks("test")[0])
    obs, _ = push.reset(seed=0)
    _, _, _, _, info = push.step(np.zeros(4))
    assert info["distance"] == pytest.approx(math.dist(push.data.qpos[5:7], push.goal[:2]))
    reach = envs.make("Reach", task=envs.get_family("Reach").benchmark_tasks("test")[0])
    reach.reset(seed=0)
    obs, _, _, _, info = reach.step(np.zeros(4))
    assert info["distance"] == pytest.approx(math.dist(obs[0:3], reach.goal))


def object_physics_task(family, **multipliers):
    base = dict(family.benchmark_tasks("test")[0].params)
    return family.make_task(**{**base, **NOMINAL, **multipliers})


def test_object_physics_change_the_model_in_place_and_restore_bit_for_bit():
    family = envs.get_family("PickPlaceParams")
    nominal = object_physics_task(family)
    env = envs.make("PickPlaceParams", task=nominal)
    model_id, pristine = id(env.model), model_arrays(env.model)
    body, geom = env.model.body("object").id, env.model.geom("object").id
    before = {
        f.field: getattr(env.model, f.field)[body if f.element == "body" else geom].copy()
        for f in OBJECT_FIELDS
    }
    varied = object_physics_task(family, mass=2.5, size=1.2, friction=0.6)
    env.set_task(varied)
    multipliers = {"mass": 2.5, "size": 1.2, "friction": 0.6}
    for f in OBJECT_FIELDS:
        row = getattr(env.model, f.field)[body if f.element == "body" else geom]
        np.testing.assert_allclose(row, before[f.field] * f.factor(multipliers))
    assert env.model.body_subtreemass[body] == pytest.approx(0.05 * 2.5)  # mj_setConst ran
    obs, _ = env.reset(seed=0)
    assert obs[6] == pytest.approx(0.02 * 1.2)  # the bigger cube rests higher
    env.set_task(nominal)
    assert id(env.model) == model_id
    assert model_arrays(env.model) == pristine


def test_object_physics_change_the_dynamics():
    family = envs.get_family("PickPlaceParams")
    heavy_slippery = object_physics_task(family, mass=3.0, friction=0.5)
    light_grippy = object_physics_task(family, mass=0.34, friction=2.0)
    trajectories = []
    for task in (heavy_slippery, light_grippy):
        env = envs.make("PickPlaceParams")
        trajectories.append([obs[4:7] for obs, _ in run_controller(env, task, 0, steps=60)])
    assert not np.allclose(trajectories[0], trajectories[1], atol=1e-4)


def test_tasks_move_goals_and_objects():
    family = envs.get_family("PickPlace")
    env = envs.make("PickPlace")
    starts = []
    for task in family.benchmark_tasks("train")[:5]:
        obs, _ = env.reset(seed=0, options={"task": task})
        np.testing.assert_allclose(obs[4:6], vector(task, "object", 2))
        np.testing.assert_array_equal(env.goal, vector(task, "goal", 3))
        starts.append(obs[4:6])
    assert len({tuple(s) for s in starts}) == 5


def test_bad_parameters_raise_clear_errors():
    family = envs.get_family("PickPlace")
    params = dict(family.benchmark_tasks("test")[0].params)
    with pytest.raises(ValueError, match=r"PickPlace.goal_z = 0.5 is out of range \[0.1, 0.3\]"):
        family.make_task(**{**params, "goal_z": 0.5})
    with pytest.raises(ValueError, match="takes parameters"):
        family.make_task(goal_x=0.1)
    physics = envs.get_family("PickPlaceParams")
    with pytest.raises(ValueError, match=r"mass = 10.0 is out of range \[0.333333, 3\]"):
        object_physics_task(physics, mass=10.0)
    with pytest.raises(ValueError, match="task of family 'PickPlace' given to 'PickPlaceParams'"):
        envs.make("PickPlaceParams", task=family.benchmark_tasks("test")[0])
    with pytest.raises(ValueError, match=r"object_shape must be one of \('cube', 'cylinder'\)"):
        envs.make("PickPlace", object_shape="sphere")
    with pytest.raises(ValueError, match="hand_noise must be >= 0"):
        envs.make("Reach", hand_noise=-0.1)
    with pytest.raises(ValueError, match="no scripted controller for family 'AntGoal'"):
        controller_for(envs.get_family("AntGoal").sample_tasks(1)[0])
