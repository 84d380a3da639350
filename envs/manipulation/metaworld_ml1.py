"""Meta-World's ML1 benchmarks as task families (behind the ``metaworld`` extra).

``MetaWorldReach``, ``MetaWorldPush`` and ``MetaWorldPickPlace`` wrap Meta-World's ``reach-v3``,
``push-v3`` and ``pick-place-v3`` so that every agent here runs on the community's standard
benchmark. A task is Meta-World's random vector, named per axis (``object_x`` ... ``goal_z``).

Their splits are Meta-World's own: the 50 train and 50 test tasks of ``metaworld.ML1(env_name,
seed=42)`` (42 as in Meta-World's README). These are fixed sets, not regions: any other parameter
setting is not a task of the family, and :meth:`MetaWorldFamily.sample_tasks` draws from the
set of its split. This module imports Meta-World only when the sets are first needed; the env
classes are in :mod:`envs.manipulation.metaworld_envs`.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from envs.manipulation.families import BENCHMARK_SIZE, BenchmarkFamily, axis_specs
from metarobot.tasks import SPLITS, ParamValue, Split, SplitRule, Task

INSTALL_HINT = (
    "Meta-World families need the metaworld extra: pip install 'metarobot[metaworld]'. "
    "Meta-World pins mujoco==3.3.0, so install it into a virtual environment of its own."
)


def metaworld_installed() -> bool:
    """Whether the ``metaworld`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("metaworld") is not None


def import_metaworld() -> ModuleType:
    """Import Meta-World, or explain how to install it."""
    try:
        import metaworld
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return metaworld


@functools.cache
def _ml1_sets(env_name: str, seed: int) -> dict[Split, tuple[tuple[float, ...], ...]]:
    """The random vectors of ``metaworld.ML1(env_name, seed)``'s train and test tasks."""
    benchmark = import_metaworld().ML1(env_name, seed=seed)
    tasks = {"train": benchmark.train_tasks, "test": benchmark.test_tasks}
    # Meta-World stores each task as a pickle of its own making (its env class and settings).
    return {
        split: tuple(
            tuple(float(v) for v in pickle.loads(t.data)["rand_vec"]) for t in tasks[split]
        )
        for split in SPLITS
    }


@dataclass(frozen=True)
class ML1Sets(SplitRule):
    """Meta-World's ML1 split: two fixed sets of tasks rather than regions of parameter space."""

    def split_of(self, unit: np.ndarray) -> Split:
        """Sets have no regions; :meth:`MetaWorldFamily.split_of` looks tasks up instead."""
        raise TypeError("ML1 splits are fixed sets of tasks; use MetaWorldFamily.split_of")

    def describe(self) -> str:
        """One-line summary for docs and ``metarobot list``."""
        return "Meta-World ML1: the 50 train and 50 test tasks of metaworld.ML1(env, seed=42)"


@dataclass(frozen=True)
class MetaWorldFamily(BenchmarkFamily):
    """One of Meta-World's ML1 benchmarks; its tasks are exactly ML1's.

    Attributes:
        env_name: Meta-World's name of the environment, e.g. ``"pick-place-v3"``.
    """

    env_name: str = ""

    def _sets(self) -> dict[Split, tuple[tuple[float, ...], ...]]:
        return _ml1_sets(self.env_name, self.benchmark_seed)

    def _task(self, vector: tuple[float, ...], split: Split, index: int) -> Task:
        return self._make(dict(zip(self.param_names, vector, strict=True)), split, index)

    def benchmark_tasks(self, split: Split) -> list[Task]:
        """ML1's 50 tasks of ``split``, in Meta-World's order."""
        return [self._task(v, split, i) for i, v in enumerate(self._sets()[split])]

    def sample_tasks(self, n: int, split: Split = "train", seed: int = 0) -> list[Task]:
        """Draw ``n`` tasks from ML1's set of ``split``: shuffled passes over its 50 tasks.

        Every 50 consecutive draws hold each task once, and the first ``k`` tasks of a longer
        draw equal a draw of ``k`` tasks, as for the other families.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if n < 0:
            raise ValueError(f"number of tasks must be >= 0, got {n}")
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        order: list[int] = []
        while len(order) < n:
            order.extend(rng.permutation(BENCHMARK_SIZE).tolist())
        vectors = self._sets()[split]
        return [self._task(vectors[k], split, i) for i, k in enumerate(order[:n])]

    def split_of(self, params: Mapping[str, ParamValue]) -> Split:
        """The ML1 set that ``params`` belong to (``ValueError`` if neither)."""
        vector = tuple(float(np.asarray(params[name])) for name in self.param_names)
        for split, vectors in self._sets().items():
            if vector in vectors:
                return split
        raise ValueError(
            f"{self.name} task {dict(params)} is not one of Meta-World's ML1 tasks for "
            f"{self.env_name} (seed {self.benchmark_seed}); take tasks from benchmark_tasks() "
            "or sample_tasks()"
        )


def _family(
    name: str, env_name: str, goal_low: tuple[float, ...], goal_high: tuple[float, ...], task: str
) -> MetaWorldFamily:
    """An ML1 family; ranges are Meta-World's ``_random_reset_space`` (checked by the env)."""
    return MetaWorldFamily(
        name=name,
        specs=(
            *axis_specs("object", (-0.1, 0.6, 0.02), (0.1, 0.7, 0.02), "Meta-World object"),
            *axis_specs("goal", goal_low, goal_high, "Meta-World goal"),
        ),
        split_rule=ML1Sets(),
        horizon=500,
        doc=f"Meta-World ML1 {env_name} (Sawyer arm): {task}",
        env_name=env_name,
    )


METAWORLD_FAMILIES = tuple(
    _family(*row)
    for row in (
        ("MetaWorldReach", "reach-v3", (-0.1, 0.8, 0.05), (0.1, 0.9, 0.3), "reach a goal"),
        ("MetaWorldPush", "push-v3", (-0.1, 0.8, 0.01), (0.1, 0.9, 0.02), "push a puck to a goal"),
        ("MetaWorldPickPlace", "pick-place-v3", (-0.1, 0.8, 0.05), (0.1, 0.9, 0.3), "place a puck"),
    )
)
