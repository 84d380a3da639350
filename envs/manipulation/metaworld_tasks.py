"""What the Meta-World families share: Meta-World's 50 skills, its task sets, the family base.

A *skill* is one of Meta-World's environment classes (``reach-v3``, ``door-open-v3``, ...); a
Meta-World task is a skill and the random vector that places its objects and goal. This module
holds what the families need without importing Meta-World: the skills in Meta-World's own order
(a skill's index is Meta-World's ``task_id``) with the ranges of their random vectors, and
:class:`MetaWorldFamily`, whose tasks are exactly a Meta-World benchmark's train and test sets
(ML1 for one skill in :mod:`envs.manipulation.metaworld_ml1`, ML10 and ML45 across skills in
:mod:`envs.manipulation.metaworld_multi`). Only Meta-World can draw the sets (:func:`task_sets`).

Drawing the sets runs Meta-World's benchmark constructors, which reset every skill's env 50 times
per split: about a second per skill, 27 s for ML45. Every process that validates tasks needs the
sets (sampler workers and Ray actors included), so they are kept on disk after the first draw,
per Meta-World version (see :func:`task_sets`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import itertools
import json
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from envs.manipulation.families import BENCHMARK_SIZE, BenchmarkFamily, axis_specs
from metarobot.tasks import SPLITS, ParamSpec, ParamValue, Split, SplitRule, Task

INSTALL_HINT = (
    "Meta-World families need the metaworld extra: pip install 'metarobot[metaworld]'. "
    "Meta-World pins mujoco==3.3.0, so install it into a virtual environment of its own."
)
REWARD_VERSION = "v2"
"""Meta-World's reward functions used here (its default). Meta-World+ keeps the ``v1`` rewards
of the original paper beside them; results under one are not comparable with the other."""


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


def metaworld_version() -> str:
    """The installed Meta-World's version (``ImportError`` with the install hint if none)."""
    try:
        return importlib.metadata.version("metaworld")
    except importlib.metadata.PackageNotFoundError as error:
        raise ImportError(INSTALL_HINT) from error


@dataclass(frozen=True)
class Skill:
    """One of Meta-World's environments, as its tasks vary.

    Attributes:
        env_name: Meta-World's name, e.g. ``"pick-place-v3"``.
        specs: The random vector's entries, in Meta-World's order: ``object_x/y/z`` (where the
            object, or the fixture the robot works on, starts), then ``goal_x/y/z`` for the
            skills whose goal is drawn too. Ranges are Meta-World's ``_random_reset_space``
            (some are a single value: Meta-World does not vary that coordinate).
        doc: What the robot must do.
    """

    env_name: str
    specs: tuple[ParamSpec, ...]
    doc: str

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the random vector's entries, in order."""
        return tuple(spec.name for spec in self.specs)

    @property
    def title(self) -> str:
        """``pick-place-v3`` as ``PickPlace``, for family names."""
        return "".join(part.capitalize() for part in self.env_name.removesuffix("-v3").split("-"))


def _skill(
    env_name: str,
    object_range: tuple[tuple[float, ...], tuple[float, ...]],
    goal_range: tuple[tuple[float, ...], tuple[float, ...]] | None,
    doc: str,
) -> Skill:
    specs = axis_specs("object", *object_range, "Meta-World object")
    if goal_range is not None:
        specs += axis_specs("goal", *goal_range, "Meta-World goal")
    return Skill(env_name, tuple(specs), doc)


# Meta-World's ALL_V3_ENVIRONMENTS, in its order; tests check names, order and ranges against it.
SKILLS: tuple[Skill, ...] = tuple(
    _skill(*row)
    for row in (
        ("assembly-v3", ((0.0, 0.6, 0.02), (0.0, 0.6, 0.02)),
         ((-0.1, 0.75, 0.1), (0.1, 0.85, 0.1)), "pick up a nut and place it onto a peg"),
        ("basketball-v3", ((-0.1, 0.6, 0.0299), (0.1, 0.7, 0.0301)),
         ((-0.1, 0.85, 0.0), (0.1, 0.9000001, 0.0)), "dunk a ball into the basket"),
        ("bin-picking-v3", ((-0.21, 0.65, 0.02), (-0.03, 0.75, 0.02)),
         ((0.1199, 0.699, -0.001), (0.1201, 0.701, 0.001)), "move a puck between two bins"),
        ("box-close-v3", ((-0.05, 0.5, 0.02), (0.05, 0.55, 0.02)),
         ((-0.1, 0.7, 0.133), (0.1, 0.8, 0.133)), "grasp the lid and close the box with it"),
        ("button-press-topdown-v3", ((-0.1, 0.8, 0.115), (0.1, 0.9, 0.115)), None,
         "press a button from the top"),
        ("button-press-topdown-wall-v3", ((-0.1, 0.8, 0.115), (0.1, 0.9, 0.115)), None,
         "press a button from the top, past a wall"),
        ("button-press-v3", ((-0.1, 0.85, 0.115), (0.1, 0.9, 0.115)), None, "press a button"),
        ("button-press-wall-v3", ((-0.05, 0.85, 0.1149), (0.05, 0.9, 0.1151)), None,
         "press a button past a wall"),
        ("coffee-button-v3", ((-0.1, 0.8, -0.001), (0.1, 0.9, 0.001)), None,
         "press the coffee machine's button"),
        ("coffee-pull-v3", ((-0.05, 0.7, -0.001), (0.05, 0.75, 0.001)),
         ((-0.1, 0.55, -0.001), (0.1, 0.65, 0.001)), "pull a mug from the coffee machine"),
        ("coffee-push-v3", ((-0.1, 0.55, -0.001), (0.1, 0.65, 0.001)),
         ((-0.05, 0.7, -0.001), (0.05, 0.75, 0.001)), "push a mug under the coffee machine"),
        ("dial-turn-v3", ((-0.1, 0.7, 0.0), (0.1, 0.8, 0.0)), None, "turn a dial"),
        ("disassemble-v3", ((0.0, 0.6, 0.025), (0.1, 0.75, 0.02501)),
         ((-0.1, 0.6, 0.1699), (0.1, 0.75, 0.1701)), "pick a nut off a peg"),
        ("door-close-v3", ((0.0, 0.85, 0.15), (0.1, 0.95, 0.15)), None, "close a hinged door"),
        ("door-lock-v3", ((-0.1, 0.8, 0.15), (0.1, 0.85, 0.15)), None,
         "lock a door by turning its lock"),
        ("door-open-v3", ((0.0, 0.85, 0.15), (0.1, 0.95, 0.15)), None, "open a hinged door"),
        ("door-unlock-v3", ((-0.1, 0.8, 0.15), (0.1, 0.85, 0.15)), None,
         "unlock a door by turning its lock"),
        ("hand-insert-v3", ((-0.1, 0.6, 0.05), (0.1, 0.7, 0.05)),
         ((-0.04, 0.8, -0.0201), (0.04, 0.88, -0.0199)), "put the gripper into a hole"),
        ("drawer-close-v3", ((-0.1, 0.9, 0.0), (0.1, 0.9, 0.0)), None, "push a drawer closed"),
        ("drawer-open-v3", ((-0.1, 0.9, 0.0), (0.1, 0.9, 0.0)), None, "pull a drawer open"),
        ("faucet-open-v3", ((-0.05, 0.8, 0.0), (0.05, 0.85, 0.0)), None,
         "turn a faucet counter-clockwise"),
        ("faucet-close-v3", ((-0.1, 0.8, 0.0), (0.1, 0.85, 0.0)), None, "turn a faucet clockwise"),
        ("hammer-v3", ((-0.1, 0.4, 0.0), (0.1, 0.5, 0.0)), None, "hammer a nail into a wall"),
        ("handle-press-side-v3", ((-0.35, 0.65, -0.001), (-0.25, 0.75, 0.001)), None,
         "press a handle down, from the side"),
        ("handle-press-v3", ((-0.1, 0.8, -0.001), (0.1, 0.9, 0.001)), None, "press a handle down"),
        ("handle-pull-side-v3", ((-0.35, 0.65, 0.0), (-0.25, 0.75, 0.0)), None,
         "pull a handle up, from the side"),
        ("handle-pull-v3", ((-0.1, 0.8, -0.001), (0.1, 0.9, 0.001)), None, "pull a handle up"),
        ("lever-pull-v3", ((-0.1, 0.7, 0.0), (0.1, 0.8, 0.0)), None, "pull a lever up"),
        ("pick-place-wall-v3", ((-0.05, 0.6, 0.015), (0.05, 0.65, 0.015)),
         ((-0.05, 0.85, 0.05), (0.05, 0.9, 0.3)), "pick up a puck and place it past a wall"),
        ("pick-out-of-hole-v3", ((0.0, 0.75, 0.02), (0.0, 0.75, 0.02)),
         ((-0.1, 0.5, 0.15), (0.1, 0.6, 0.3)), "pick a puck out of a hole"),
        ("pick-place-v3", ((-0.1, 0.6, 0.02), (0.1, 0.7, 0.02)),
         ((-0.1, 0.8, 0.05), (0.1, 0.9, 0.3)), "pick up a puck and place it at a goal"),
        ("plate-slide-v3", ((0.0, 0.6, 0.0), (0.0, 0.6, 0.0)),
         ((-0.1, 0.85, 0.0), (0.1, 0.9, 0.0)), "slide a plate into a cabinet"),
        ("plate-slide-side-v3", ((0.0, 0.6, 0.0), (0.0, 0.6, 0.0)),
         ((-0.3, 0.54, 0.0), (-0.25, 0.66, 0.0)), "slide a plate into a cabinet from the side"),
        ("plate-slide-back-v3", ((0.0, 0.85, 0.0), (0.0, 0.85, 0.0)),
         ((-0.1, 0.6, 0.015), (0.1, 0.6, 0.015)), "slide a plate out of a cabinet"),
        ("plate-slide-back-side-v3", ((-0.25, 0.6, 0.0), (-0.25, 0.6, 0.0)),
         ((-0.05, 0.6, 0.015), (0.15, 0.6, 0.015)), "slide a plate out of a cabinet sideways"),
        ("peg-insert-side-v3", ((0.0, 0.5, 0.02), (0.2, 0.7, 0.02)),
         ((-0.35, 0.4, -0.001), (-0.25, 0.7, 0.001)), "insert a peg into a hole from the side"),
        ("peg-unplug-side-v3", ((-0.25, 0.6, -0.001), (-0.15, 0.8, 0.001)), None,
         "unplug a peg sideways"),
        ("soccer-v3", ((-0.1, 0.6, 0.03), (0.1, 0.7, 0.03)),
         ((-0.1, 0.8, 0.0), (0.1, 0.9, 0.0)), "kick a ball into a goal"),
        ("stick-push-v3", ((-0.08, 0.58, 0.0), (-0.03, 0.62, 0.001)),
         ((0.399, 0.55, 0.1319), (0.401, 0.6, 0.1321)), "push a bottle with a stick"),
        ("stick-pull-v3", ((-0.1, 0.55, 0.0), (0.0, 0.65, 0.001)),
         ((0.35, 0.45, 0.0199), (0.45, 0.55, 0.0201)), "pull a bottle with a stick"),
        ("push-v3", ((-0.1, 0.6, 0.02), (0.1, 0.7, 0.02)),
         ((-0.1, 0.8, 0.01), (0.1, 0.9, 0.02)), "push a puck to a goal"),
        ("push-wall-v3", ((-0.05, 0.6, 0.015), (0.05, 0.65, 0.015)),
         ((-0.05, 0.85, 0.01), (0.05, 0.9, 0.02)), "push a puck to a goal past a wall"),
        ("push-back-v3", ((-0.1, 0.8, 0.02), (0.1, 0.85, 0.02)),
         ((-0.1, 0.6, 0.0199), (0.1, 0.7, 0.0201)), "pull a puck back to a goal"),
        ("reach-v3", ((-0.1, 0.6, 0.02), (0.1, 0.7, 0.02)),
         ((-0.1, 0.8, 0.05), (0.1, 0.9, 0.3)), "reach a goal"),
        ("reach-wall-v3", ((-0.05, 0.6, 0.015), (0.05, 0.65, 0.015)),
         ((-0.05, 0.85, 0.05), (0.05, 0.9, 0.3)), "reach a goal past a wall"),
        ("shelf-place-v3", ((-0.1, 0.5, 0.019), (0.1, 0.6, 0.021)),
         ((-0.1, 0.8, 0.299), (0.1, 0.9, 0.301)), "place a puck on a shelf"),
        ("sweep-into-v3", ((-0.1, 0.6, 0.02), (0.1, 0.7, 0.02)),
         ((-0.001, 0.8399, 0.0199), (0.001, 0.8401, 0.0201)), "sweep a puck into a hole"),
        ("sweep-v3", ((-0.1, 0.6, 0.02), (0.1, 0.7, 0.02)), None, "sweep a puck off the table"),
        ("window-open-v3", ((-0.1, 0.7, 0.16), (0.1, 0.9, 0.16)), None, "slide a window open"),
        ("window-close-v3", ((0.0, 0.75, 0.2), (0.0, 0.9, 0.2)), None, "slide a window closed"),
    )
)  # fmt: skip

_SKILL_INDEX = {skill.env_name: index for index, skill in enumerate(SKILLS)}


def skill_index(env_name: str) -> int:
    """The index of a skill (Meta-World's ``task_id``); ``ValueError`` listing valid names."""
    try:
        return _SKILL_INDEX[env_name]
    except KeyError:
        raise ValueError(
            f"unknown Meta-World skill {env_name!r}; valid skills: {', '.join(_SKILL_INDEX)}"
        ) from None


TaskSet = tuple[tuple[int, tuple[float, ...]], ...]
"""A benchmark split: ``(skill index, random vector)`` per task, in Meta-World's order."""


def task_sets(benchmark: str, seed: int, env_name: str = "") -> dict[Split, TaskSet]:
    """The train and test tasks of ``metaworld.<benchmark>`` for ``seed``.

    ``benchmark`` is ``"ML1"`` (then ``env_name`` names the skill), ``"ML10"`` or ``"ML45"``.
    Drawn once per process and kept in ``$XDG_CACHE_HOME/metarobot`` (``~/.cache/metarobot``)
    under the Meta-World version, so a new Meta-World draws them afresh; an unwritable cache only
    costs the draw. Tests compare the sets with Meta-World's own.
    """
    return _task_sets(benchmark, seed, env_name, metaworld_version())


@functools.cache
def _task_sets(benchmark: str, seed: int, env_name: str, version: str) -> dict[Split, TaskSet]:
    path = _cache_dir(version) / f"{benchmark}{'-' + env_name if env_name else ''}-{seed}.json"
    try:
        cached = json.loads(path.read_text())
        return {s: tuple((int(k), tuple(map(float, v))) for k, v in cached[s]) for s in SPLITS}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sets = _draw_task_sets(benchmark, seed, env_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
            json.dump({s: [[k, list(v)] for k, v in sets[s]] for s in SPLITS}, handle)
        os.replace(handle.name, path)
    except OSError:
        pass
    return sets


def _cache_dir(version: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "metarobot" / f"metaworld-{version}"


def _draw_task_sets(benchmark: str, seed: int, env_name: str) -> dict[Split, TaskSet]:
    metaworld = import_metaworld()
    if benchmark == "ML1":
        made = metaworld.ML1(env_name, seed=seed)
    else:
        made = getattr(metaworld, benchmark)(seed=seed)
    tasks = {"train": made.train_tasks, "test": made.test_tasks}
    # Meta-World stores each task as a pickle of its own making (its env class and settings).
    return {
        split: tuple(
            (skill_index(t.env_name), tuple(float(v) for v in pickle.loads(t.data)["rand_vec"]))
            for t in tasks[split]
        )
        for split in SPLITS
    }


def shuffled_passes(rng: np.random.Generator, size: int) -> Iterator[int]:
    """``0 .. size - 1`` in shuffled passes: every ``size`` consecutive items hold each once."""
    while True:
        yield from rng.permutation(size).tolist()


def check_draw(split: Split, n: int) -> None:
    """Refuse an unknown split or a negative number of tasks, naming the valid values."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"number of tasks must be >= 0, got {n}")


@dataclass(frozen=True)
class MetaWorldSets(SplitRule):
    """A Meta-World benchmark's split: fixed sets of tasks rather than regions of parameter space.

    Attributes:
        summary: What the sets hold, for docs and ``metarobot list``.
    """

    summary: str = ""

    def split_of(self, unit: np.ndarray) -> Split:
        """Sets have no regions; :meth:`MetaWorldFamily.split_of` looks tasks up instead."""
        raise TypeError("Meta-World splits are fixed sets of tasks; use MetaWorldFamily.split_of")

    def describe(self) -> str:
        """One-line summary for docs and ``metarobot list``."""
        return self.summary


@dataclass(frozen=True)
class MetaWorldFamily(BenchmarkFamily):
    """A family whose tasks are exactly a Meta-World benchmark's train and test tasks.

    Any other parameter setting is not a task of the family. Subclasses say how a task's
    parameters name its skill (:meth:`skill_of`, :meth:`params_of`) and which skills each split
    holds (:meth:`skills`).

    Attributes:
        benchmark: Meta-World's benchmark class: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: The skill of an ML1 family (empty for the others).
    """

    benchmark: str = "ML1"
    env_name: str = ""

    def skills(self, split: Split) -> tuple[int, ...]:
        """Indices of the skills of ``split``, in Meta-World's order."""
        raise NotImplementedError

    def skill_of(self, params: Mapping[str, object]) -> int:
        """The index of the skill that a task's parameters belong to."""
        raise NotImplementedError

    def params_of(self, skill: int, vector: tuple[float, ...]) -> dict[str, ParamValue]:
        """A task's parameters from its skill and Meta-World random vector."""
        raise NotImplementedError

    def vector_of(self, task: Task) -> np.ndarray:
        """The Meta-World random vector of a task (what Meta-World's ``set_task`` receives)."""
        return np.array([task.scalar(name) for name in self.skill(task).param_names])

    def skill(self, task: Task) -> Skill:
        """The skill of a task."""
        return SKILLS[self.skill_of(dict(task.params))]

    def _sets(self) -> dict[Split, TaskSet]:
        return task_sets(self.benchmark, self.benchmark_seed, self.env_name)

    @functools.cached_property
    def _members(self) -> dict[Split, frozenset[tuple[int, tuple[float, ...]]]]:
        return {split: frozenset(tasks) for split, tasks in self._sets().items()}

    def _task(self, skill: int, vector: tuple[float, ...], split: Split, index: int) -> Task:
        return self._make(self.params_of(skill, vector), split, index)

    def benchmark_tasks(self, split: Split) -> list[Task]:
        """The benchmark's tasks of ``split``, all of them, in Meta-World's order."""
        check_draw(split, 0)
        return [self._task(k, v, split, i) for i, (k, v) in enumerate(self._sets()[split])]

    def skill_tasks(self, split: Split, per_skill: int) -> list[Task]:
        """The first ``per_skill`` tasks of each skill of ``split``, in Meta-World's order.

        Meta-World+ measures meta-learning on the first 40 tasks of each test skill.
        """
        check_draw(split, 0)
        if not 1 <= per_skill <= BENCHMARK_SIZE:
            raise ValueError(f"per_skill must be in [1, {BENCHMARK_SIZE}], got {per_skill}")
        taken: Counter[int] = Counter()
        tasks: list[Task] = []
        for skill, vector in self._sets()[split]:
            if taken[skill] < per_skill:
                taken[skill] += 1
                tasks.append(self._task(skill, vector, split, len(tasks)))
        return tasks

    def sample_tasks(self, n: int, split: Split = "train", seed: int = 0) -> list[Task]:
        """Draw ``n`` tasks from the benchmark's set of ``split``: shuffled passes over it.

        Every pass holds each task of the set once, and the first ``k`` tasks of a longer draw
        equal a draw of ``k`` tasks, as for the other families.
        """
        check_draw(split, n)
        tasks = self._sets()[split]
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        picks = itertools.islice(shuffled_passes(rng, len(tasks)), n)
        return [self._task(*tasks[k], split, i) for i, k in enumerate(picks)]

    def split_of(self, params: Mapping[str, ParamValue]) -> Split:
        """The set that ``params`` belong to (``ValueError`` if neither)."""
        skill = self.skill_of(params)
        vector = tuple(float(np.asarray(params[name])) for name in SKILLS[skill].param_names)
        for split, members in self._members.items():
            if (skill, vector) in members:
                return split
        raise ValueError(
            f"{self.name} task {dict(params)} is not one of Meta-World's {self.benchmark} tasks "
            f"for {SKILLS[skill].env_name} (seed {self.benchmark_seed}); take tasks from "
            "benchmark_tasks() or sample_tasks()"
        )
