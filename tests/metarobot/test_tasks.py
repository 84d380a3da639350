import json

import numpy as np
import pytest

from metarobot.tasks import FixedTasks, ParamSpec, SplitRule, Task, TaskFamily

FAMILY = TaskFamily(
    name="Toy",
    specs=(ParamSpec("goal", -1.0, 1.0, size=2), ParamSpec("mass", 0.5, 2.0, log=True)),
    split_rule=SplitRule(cells=4, period=3),
    horizon=10,
)


def test_same_seed_same_tasks_and_prefix_property():
    a = FAMILY.sample_tasks(20, "train", seed=3)
    assert a == FAMILY.sample_tasks(20, "train", seed=3)
    assert FAMILY.sample_tasks(5, "train", seed=3) == a[:5]
    assert a != FAMILY.sample_tasks(20, "train", seed=4)


def test_tasks_are_labelled_and_indexed():
    tasks = FAMILY.sample_tasks(6, "test", seed=0)
    assert [t.index for t in tasks] == list(range(6))
    assert all(t.split == "test" and t.family == "Toy" for t in tasks)
    assert all(FAMILY.split_of(dict(t.params)) == "test" for t in tasks)


def test_splits_are_disjoint_regions():
    train = FAMILY.sample_tasks(300, "train", seed=0)
    test = FAMILY.sample_tasks(300, "test", seed=0)
    assert not {t.params for t in train} & {t.params for t in test}
    assert all(FAMILY.split_of(dict(t.params)) == "train" for t in train)
    # Both splits cover the whole range of each coordinate (held-out cells are interleaved).
    for tasks in (train, test):
        goals = np.array([t["goal"] for t in tasks])
        assert goals.min() < -0.7 and goals.max() > 0.7


def test_log_parameters_are_log_uniform():
    masses = np.array([t.scalar("mass") for t in FAMILY.sample_tasks(2000, "train", seed=1)])
    assert 0.5 <= masses.min() and masses.max() <= 2.0
    # Log-uniform in [0.5, 2]: the median is near 1, not near the arithmetic middle 1.25.
    assert abs(np.median(masses) - 1.0) < 0.1


def test_task_json_round_trip_and_hashable():
    task = FAMILY.sample_tasks(1, seed=0)[0]
    again = Task.from_json(task.to_json())
    assert again == task and hash(again) == hash(task)
    assert json.loads(task.to_json())["params"]["goal"] == list(task["goal"])


def test_make_task_assigns_split_from_parameters():
    task = FAMILY.make_task(goal=(0.1, -0.2), mass=1.0)
    assert task.split == FAMILY.split_of({"goal": (0.1, -0.2), "mass": 1.0})
    assert task.index == -1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"goal": (0.1, 3.0), "mass": 1.0}, r"Toy.goal = \[0.1, 3.0\] is out of range \[-1, 1\]"),
        ({"goal": (0.1, 0.1), "mass": 9.0}, r"Toy.mass = 9.0 is out of range \[0.5, 2\]"),
        ({"goal": (0.1, float("nan")), "mass": 1.0}, "out of range"),
        ({"goal": (0.1,), "mass": 1.0}, "must have 2 value"),
        ({"goal": (0.1, 0.1)}, r"takes parameters \('goal', 'mass'\)"),
    ],
)
def test_bad_parameters_name_value_and_range(params, message):
    with pytest.raises(ValueError, match=message):
        FAMILY.make_task(**params)


def test_validate_rejects_other_family_and_mislabelled_split():
    task = FAMILY.sample_tasks(1, "train", seed=0)[0]
    with pytest.raises(ValueError, match="task of family 'Other' given to 'Toy'"):
        FAMILY.validate(Task("Other", "train", 0, task.params))
    with pytest.raises(ValueError, match="labelled 'test' but lies in the 'train' region"):
        FAMILY.validate(Task("Toy", "test", 0, task.params))
    with pytest.raises(ValueError, match="split must be one of"):
        FAMILY.sample_tasks(1, "valid", seed=0)  # type: ignore[arg-type]


def test_fixed_task_family_shares_its_tasks():
    fixed = TaskFamily(
        "Dir",
        (ParamSpec("direction", -1, 1),),
        FixedTasks(({"direction": 1.0}, {"direction": -1.0})),
        horizon=5,
    )
    tasks = fixed.sample_tasks(2, "test", seed=0)
    assert sorted(t.scalar("direction") for t in tasks) == [-1.0, 1.0]
    with pytest.raises(ValueError, match="is not one of"):
        fixed.make_task(direction=0.5)
