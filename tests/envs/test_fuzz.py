"""Property tests: random and extreme tasks and actions never crash an env or leak NaN.

For every family of the contract tests (``CONTRACT_FAMILY_NAMES``), hypothesis draws task
parameters (inside the family's ranges, on their bounds, or anywhere: out of range, huge,
infinite, NaN) and action sequences (inside the bounds, far outside, huge, occasionally NaN or
infinite), and may kick the simulation with a huge joint velocity. The only exceptions allowed
are the documented ``ValueError``s for a task outside the family's space and a non-finite or
malformed action; observations and rewards stay finite, and a diverged simulation ends its
episode with ``truncated=True`` and ``info["unstable"]``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from metarobot.tasks import FixedTasks, Task, TaskFamily
from tests.envs.conftest import CONTRACT_FAMILY_NAMES

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples in every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EXTREME = st.sampled_from([1e6, -1e6, 3.4e38, -3.4e38, 1e300, -1e300])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@functools.cache
def env_of(name: str) -> Any:
    """One env per family for all examples: building MuJoCo models is the slow part."""
    return envs.make(name)


def param_values(family: TaskFamily) -> st.SearchStrategy[dict[str, Any]]:
    """Task parameters: mostly a valid task (often on the bounds), else anything at all."""
    if isinstance(family.split_rule, FixedTasks):
        valid = st.sampled_from([dict(values) for values in family.split_rule.values])
        anything = st.fixed_dictionaries(
            {name: st.floats(allow_nan=True) for name in family.param_names}
        )
        return st.one_of(valid, valid, valid, anything)

    def fields(value: Any) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                spec.name: value(spec)
                if spec.size == 0
                else st.tuples(*[value(spec)] * spec.size).map(tuple)
                for spec in family.specs
            }
        )

    valid = st.one_of(
        fields(
            lambda spec: st.one_of(
                st.sampled_from([spec.low, spec.high]), st.floats(spec.low, spec.high)
            )
        ),
        # Sampled tasks are valid by definition (the only valid ones for Meta-World's sets).
        st.sampled_from([dict(task.params) for task in family.sample_tasks(10, seed=0)]),
    )
    anything = fields(
        lambda spec: st.one_of(
            st.floats(spec.low, spec.high), st.floats(allow_nan=True), EXTREME, NON_FINITE
        )
    )
    return st.one_of(valid, valid, valid, anything)


def in_range(family: TaskFamily, params: dict[str, Any]) -> bool:
    if isinstance(family.split_rule, FixedTasks):
        return any(params == dict(values) for values in family.split_rule.values)
    for spec in family.specs:
        if spec.name not in params:  # a family of several skills: each has its own parameters
            continue
        values = np.atleast_1d(np.asarray(params[spec.name], dtype=np.float64))
        if not (np.isfinite(values).all() and (values >= spec.low).all()):
            return False
        if not (values <= spec.high).all():
            return False
    try:  # families with fixed task sets (Meta-World ML1) refuse other in-range points
        family.split_of(params)
    except ValueError:
        return False
    return True


def actions(size: int, low: np.ndarray, high: np.ndarray) -> st.SearchStrategy[np.ndarray]:
    """An action: inside the bounds, far outside, huge, or (rarely) NaN or infinite."""
    bound = float(max(np.abs(low).max(), np.abs(high).max()))
    element = st.one_of(
        st.floats(-bound, bound),
        st.floats(-bound, bound),
        st.floats(-100 * bound, 100 * bound),
        EXTREME,
    )
    finite = st.lists(element, min_size=size, max_size=size).map(np.array)
    broken = st.lists(st.one_of(element, NON_FINITE), min_size=size, max_size=size).map(np.array)
    return st.one_of(finite, finite, finite, finite, broken)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", CONTRACT_FAMILY_NAMES)
@FUZZ
@given(data=st.data())
def test_random_and_extreme_inputs_never_crash_or_leak_nan(name: str, data: st.DataObject) -> None:
    env = env_of(name)
    family = envs.get_family(name)
    params = data.draw(param_values(family), label="params")
    if not in_range(family, params):
        with pytest.raises(ValueError):
            family.make_task(**params)
        return
    task = family.make_task(**params)
    obs, info = env.reset(seed=data.draw(st.integers(0, 2**32 - 1)), options={"task": task})
    assert np.isfinite(obs).all() and info["unstable"] is False
    low, high = env.action_space.low, env.action_space.high
    steps = data.draw(st.integers(1, 25), label="steps")
    kick_at = data.draw(st.one_of(st.none(), st.integers(0, steps - 1)), label="kick at")
    for t in range(steps):
        action = data.draw(actions(low.shape[0], low, high), label=f"action {t}")
        if t == kick_at:
            env.data.qvel[:] = data.draw(st.floats(1e11, 1e300), label="qvel")
        if not np.isfinite(action).all():
            with pytest.raises(ValueError, match="invalid"):
                env.step(action)
            continue
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.isfinite(obs).all(), obs
        assert math.isfinite(reward), reward
        assert isinstance(info["unstable"], bool) and info["task"] == task
        if t == kick_at:
            assert info["unstable"], "a huge joint velocity must be flagged as unstable physics"
        if info["unstable"]:
            assert truncated and not terminated and reward == 0.0
        if terminated or truncated:
            break


@pytest.mark.parametrize("name", CONTRACT_FAMILY_NAMES)
def test_tasks_of_the_wrong_kind_are_refused(name: str) -> None:
    family = envs.get_family(name)
    task = family.sample_tasks(1, seed=0)[0]
    with pytest.raises(ValueError):
        env_of(name).set_task(Task("NoSuchFamily", task.split, 0, task.params))
    with pytest.raises(ValueError):
        env_of(name).set_task(Task(name, task.split, 0, (("no_such_parameter", 1.0),)))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", CONTRACT_FAMILY_NAMES)
@settings(FUZZ, max_examples=8)
@given(
    seed=st.integers(0, 2**32 - 1),
    warmup=st.integers(0, 5),
    speed=st.floats(1e11, 1e300),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_diverged_physics_is_flagged_never_nan(
    name: str, seed: int, warmup: int, speed: float, sign: float
) -> None:
    env = env_of(name)
    task = envs.get_family(name).sample_tasks(1, seed=seed % 1000)[0]
    obs, _ = env.reset(seed=seed, options={"task": task})
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        obs, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
    env.data.qvel[:] = sign * speed
    after, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
    assert info["unstable"] is True and truncated and not terminated
    assert np.isfinite(after).all() and reward == 0.0
    np.testing.assert_array_equal(after, obs)  # the last finite observation
