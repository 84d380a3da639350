"""ML10 and ML45: Meta-World's own sets, disjoint skills, envs that switch skill with the task.

Needs the ``metaworld`` extra (see test_metaworld.py). Meta-World draws ML45's sets in about 27 s,
so each benchmark is built at most once per module.
"""

import functools
import pickle
from collections import Counter

import numpy as np
import pytest

import envs
from envs.manipulation.metaworld_tasks import SKILLS
from tests.envs.test_metaworld import needs_metaworld
from tests.envs.test_metaworld_ml1 import check_family

pytestmark = needs_metaworld


@functools.cache
def metaworld_benchmark(name: str):
    import metaworld

    return getattr(metaworld, name)(seed=42)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ML10", "ML45"])
def test_task_sets_and_skills_are_metaworlds_own(name):
    family = envs.get_family(f"MetaWorld{name}")
    theirs = metaworld_benchmark(name)
    assert family.train_skills == tuple(theirs.train_classes)
    assert family.test_skills == tuple(theirs.test_classes)
    assert not set(family.train_skills) & set(family.test_skills)
    for split, tasks in (("train", theirs.train_tasks), ("test", theirs.test_tasks)):
        ours = family.benchmark_tasks(split)
        assert len(ours) == len(tasks) == 50 * len(family.skills(split))
        assert [family.skill(t).env_name for t in ours] == [t.env_name for t in tasks]
        for task, their_task in zip(ours, tasks, strict=True):
            np.testing.assert_array_equal(
                family.vector_of(task), pickle.loads(their_task.data)["rand_vec"]
            )
            assert task.split == split
    assert family.split_of(dict(ours[7].params)) == "test"
    # Meta-World+ meta-tests on the first 40 tasks of each test skill.
    first_40 = [t for skill in theirs.test_classes for t in tasks if t.env_name == skill][:40]
    selected = family.skill_tasks("test", 40)
    assert len(selected) == 40 * len(family.test_skills)
    np.testing.assert_array_equal(
        [family.vector_of(t) for t in selected[:40]],
        [pickle.loads(t.data)["rand_vec"] for t in first_40],
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ml45_passes_the_checkers_and_is_deterministic():
    """ML10 runs the contract tests of tests/envs, standing in for ML45 there."""
    check_family("MetaWorldML45")


def test_draws_spread_evenly_over_skills_and_extend():
    family = envs.get_family("MetaWorldML10")
    draw = family.sample_tasks(25, "train", seed=3)
    counts = Counter(family.skill(t).env_name for t in draw[:20])
    assert set(counts) == set(family.train_skills) and set(counts.values()) == {2}
    assert family.sample_tasks(7, "train", seed=3) == draw[:7]
    assert family.sample_tasks(7, "train", seed=4) != draw[:7]
    assert len({t.params for t in draw}) == 25
    test = family.sample_tasks(10, "test", seed=3)
    assert {family.skill(t).env_name for t in test} == set(family.test_skills)
    assert all(family.split_of(dict(t.params)) == "test" for t in test)


def test_bad_tasks_are_refused_naming_the_valid_values():
    family = envs.get_family("MetaWorldML10")
    reach = next(
        t for t in family.benchmark_tasks("train") if family.skill(t).env_name == "reach-v3"
    )
    params = dict(reach.params)
    with pytest.raises(ValueError, match=r"'skill' must be one of .*43 \(reach-v3\).*got 0.0"):
        family.make_task(**params | {"skill": 0.0})  # assembly-v3 is not an ML10 skill
    with pytest.raises(ValueError, match="'skill' must be one of"):
        family.make_task(**{k: v for k, v in params.items() if k != "skill"})
    with pytest.raises(
        ValueError, match=r"takes parameters \('object_x', 'object_y', 'object_z'\)"
    ):
        family.make_task(**params | {"skill": 15.0})  # door-open-v3 draws no goal
    with pytest.raises(ValueError, match=r"goal_z = 0.5 is out of range \[0.05, 0.3\]"):
        family.make_task(**params | {"goal_z": 0.5})
    with pytest.raises(ValueError, match="not one of Meta-World's ML10 tasks for reach-v3"):
        family.make_task(**params | {"goal_z": 0.1})


def trajectory(env, actions: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    steps = [env.step(action) for action in actions]
    return [s[0] for s in steps], [float(s[1]) for s in steps]


def test_an_env_switches_skill_and_reproduces_metaworlds_env():
    """Back on a skill it ran before, the env reruns the same Meta-World env: still exact."""
    family = envs.get_family("MetaWorldML10")
    theirs = metaworld_benchmark("ML10")
    ours = envs.make("MetaWorldML10", hand_noise=0.0)
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 4))
    tasks = family.benchmark_tasks("train")
    models = {}
    for index in (0, 60, 120, 5, 499):  # reach, push, pick-place, reach again, basketball
        skill = family.skill(tasks[index]).env_name
        env = theirs.train_classes[skill]()
        env.set_task(theirs.train_tasks[index])
        their_obs, _ = env.reset()
        our_obs, info = ours.reset(seed=index, options={"task": tasks[index]})
        np.testing.assert_array_equal(our_obs, their_obs)
        assert info["task"] == tasks[index]
        their_steps, our_steps = trajectory(env, actions), trajectory(ours, actions)
        np.testing.assert_array_equal(our_steps[0], their_steps[0])
        assert our_steps[1] == their_steps[1]
        models.setdefault(skill, ours.unwrapped.model)
        assert ours.unwrapped.model is models[skill]  # each skill's env built once
    assert len({id(model) for model in models.values()}) == 4


def test_envs_never_share_a_metaworld_env_and_build_each_skill_once(monkeypatch):
    import envs.manipulation.metaworld_envs as metaworld_envs

    built = Counter()
    build = metaworld_envs._build

    def counting_build(skill, settings):
        built[SKILLS[skill].env_name] += 1
        return build(skill, settings)

    monkeypatch.setattr(metaworld_envs, "_POOL", metaworld_envs._Pool())
    monkeypatch.setattr(metaworld_envs, "_build", counting_build)
    family = envs.get_family("MetaWorldML10")
    tasks = family.sample_tasks(20, "train", seed=0)
    pair = [envs.make("MetaWorldML10") for _ in range(2)]
    assert built == {"reach-v3": 1}  # one env read the spaces, then went back to the pool
    for first, second in zip(tasks[::2], tasks[1::2], strict=True):
        for env, task in ((pair[0], first), (pair[1], second)):
            env.reset(seed=0, options={"task": task})
            env.step(np.zeros(4))
        assert pair[0].unwrapped.model is not pair[1].unwrapped.model
    # 20 episodes over 10 skills, two envs at a time: at most two of a skill ever built.
    assert set(built) == set(family.train_skills) and max(built.values()) <= 2


def test_observed_goal_is_unbounded_in_the_space_of_several_skills():
    family = envs.get_family("MetaWorldML10")
    env = envs.make("MetaWorldML10", observe_goal=True)
    assert np.isinf(env.observation_space.high[-3:]).all()
    for task in family.sample_tasks(3, "test", seed=0):
        obs, _ = env.reset(seed=0, options={"task": task})
        assert env.observation_space.contains(obs) and np.abs(obs[-3:]).sum() > 0


def test_a_rendering_env_closes_its_metaworld_env_and_the_next_renders_alike():
    task = envs.get_family("MetaWorldML10").sample_tasks(1, "test", seed=0)[0]
    frames = []
    for _ in range(2):
        env = envs.make("MetaWorldML10", task=task, render_mode="rgb_array", width=32, height=24)
        env.reset(seed=0)
        frames.append(env.render())
        env.close()
    assert frames[0].shape == (24, 32, 3) and frames[0].std() > 1.0
    np.testing.assert_array_equal(frames[0], frames[1])
