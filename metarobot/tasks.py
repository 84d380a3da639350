"""Typed tasks and the task families that sample them.

A meta-RL result is only meaningful when adaptation is measured on tasks the learner never saw, so
every family splits its parameter space into disjoint *train* and *test* regions by construction
(``SplitRule``), and samples each split reproducibly from an explicit seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import numpy as np

Split: TypeAlias = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")
ParamValue: TypeAlias = float | tuple[float, ...]

_SPLIT_STREAM = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Task:
    """One task of a family: a frozen, hashable, JSON-serializable record.

    Attributes:
        family: Name of the task family, e.g. ``"HalfCheetahVel"``.
        split: ``"train"`` or ``"test"``; which held-out region the parameters lie in.
        index: Position in the sampled sequence (``-1`` for a task built by hand).
        params: ``(name, value)`` pairs sorted by name; values are floats or tuples of floats.
    """

    family: str
    split: Split
    index: int
    params: tuple[tuple[str, ParamValue], ...]

    def __getitem__(self, name: str) -> ParamValue:
        """Return one parameter by name."""
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(
            f"task of {self.family} has no parameter {name!r}; it has {self.param_names}"
        )

    def scalar(self, name: str) -> float:
        """A scalar parameter as a float."""
        value = self[name]
        if isinstance(value, tuple):
            raise TypeError(f"{self.family}.{name} is a vector {value}, not a scalar")
        return value

    def vector(self, name: str) -> np.ndarray:
        """A parameter as a float64 array (scalars become length-1 arrays)."""
        return np.atleast_1d(np.asarray(self[name], dtype=np.float64))

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the task's parameters, sorted."""
        return tuple(key for key, _ in self.params)

    def to_dict(self) -> dict[str, object]:
        """Plain-data form, the inverse of :meth:`from_dict`."""
        return {
            "family": self.family,
            "split": self.split,
            "index": self.index,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params},
        }

    def to_json(self) -> str:
        """Serialize to a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Task:
        """Rebuild a task from :meth:`to_dict` output."""
        missing = {"family", "split", "index", "params"} - set(data)
        if missing:
            raise ValueError(f"task record lacks {sorted(missing)}: {dict(data)}")
        split = data["split"]
        if split not in SPLITS:
            raise ValueError(f"task split {split!r} is not one of {SPLITS}")
        params = data["params"]
        if not isinstance(params, Mapping):
            raise ValueError(f"task params must be a mapping, got {params!r}")
        index = data["index"]
        if not isinstance(index, int):
            raise ValueError(f"task index must be an int, got {index!r}")
        return cls(str(data["family"]), split, index, _freeze_params(params))

    @classmethod
    def from_json(cls, text: str) -> Task:
        """Parse a task from its JSON string."""
        return cls.from_dict(json.loads(text))


def _freeze_params(params: Mapping[str, object]) -> tuple[tuple[str, ParamValue], ...]:
    frozen: list[tuple[str, ParamValue]] = []
    for name in sorted(params):
        value = params[name]
        if isinstance(value, list | tuple | np.ndarray):
            frozen.append((name, tuple(float(v) for v in value)))
        elif isinstance(value, int | float | np.floating | np.integer):
            frozen.append((name, float(value)))
        else:
            raise ValueError(
                f"parameter {name!r} must be a float or a sequence of floats: {value!r}"
            )
    return tuple(frozen)


@dataclass(frozen=True)
class ParamSpec:
    """The range of one task parameter.

    Attributes:
        name: Parameter name.
        low: Smallest allowed value (inclusive).
        high: Largest allowed value (inclusive).
        size: ``0`` for a scalar, otherwise the length of the tuple value.
        log: Sample log-uniformly (physics multipliers) instead of uniformly.
        doc: One line on what the parameter changes.
    """

    name: str
    low: float
    high: float
    size: int = 0
    log: bool = False
    doc: str = ""

    def to_unit(self, value: ParamValue) -> np.ndarray:
        """Map a value to ``[0, 1]`` coordinates (in log space for ``log`` parameters)."""
        x = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if self.log:
            return (np.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    def from_unit(self, unit: np.ndarray) -> ParamValue:
        """Inverse of :meth:`to_unit`; returns a float or a tuple of floats."""
        if self.log:
            values = np.exp(math.log(self.low) + unit * (math.log(self.high) - math.log(self.low)))
        else:
            values = self.low + unit * (self.high - self.low)
        values = np.clip(values, self.low, self.high)
        return float(values[0]) if self.size == 0 else tuple(float(v) for v in values)

    @property
    def dims(self) -> int:
        """Number of scalar coordinates the parameter occupies."""
        return max(self.size, 1)

    def describe_range(self) -> str:
        """Human-readable range, used in error messages and ``metarobot list``."""
        shape = "" if self.size == 0 else f" x{self.size}"
        scale = " log-uniform" if self.log else ""
        return f"[{self.low:g}, {self.high:g}]{shape}{scale}"


@dataclass(frozen=True)
class SplitRule:
    """Disjoint train/test regions: a checkerboard of cells over the unit parameter cube.

    Each unit coordinate is cut into ``cells`` equal bins; a point whose bin indices sum to a
    multiple of ``period`` is a test point, every other point a train point. Test regions are thus
    spread over the whole space (adaptation is judged on interpolation, not on a far corner), and
    no parameter value can belong to both splits.

    Attributes:
        cells: Bins per unit coordinate.
        period: One cell-sum residue out of ``period`` is held out for test.
    """

    cells: int = 10
    period: int = 5

    def split_of(self, unit: np.ndarray) -> Split:
        """Which split a point of the unit cube belongs to."""
        bins = np.minimum((np.asarray(unit) * self.cells).astype(np.int64), self.cells - 1)
        return "test" if int(bins.sum()) % self.period == 0 else "train"

    def describe(self) -> str:
        """One-line summary for docs and ``metarobot list``."""
        return (
            f"checkerboard: {self.cells} bins per coordinate, cells whose bin sum is a multiple of "
            f"{self.period} are test (~{100 // self.period}%), the rest train"
        )


@dataclass(frozen=True)
class FixedTasks:
    """A family with a few named tasks shared by both splits (e.g. forward/backward running).

    Such a family cannot hold out parameters; it is kept because the MAML paper evaluates on it,
    and ``metarobot list`` says that its splits are shared.
    """

    values: tuple[Mapping[str, ParamValue], ...]

    def describe(self) -> str:
        """One-line summary for docs and ``metarobot list``."""
        return f"{len(self.values)} fixed tasks shared by train and test (no held-out region)"


@dataclass(frozen=True)
class TaskFamily:
    """A parameterized family of tasks: its parameter space, split, horizon and policy size.

    Attributes:
        name: Family name, e.g. ``"AntGoal"``.
        specs: Parameter ranges.
        split_rule: How parameters are assigned to splits.
        horizon: Default episode length.
        doc: One line on what the task asks of the robot.
        hidden_sizes: Default hidden layers of a policy for the family (the MAML paper's
            100x100; 64x64 for its 2D navigation).
        sampler: Optional custom draw of unit coordinates (e.g. uniform in a disk rather than a
            square); receives a generator and returns a point of the unit cube.
    """

    name: str
    specs: tuple[ParamSpec, ...]
    split_rule: SplitRule | FixedTasks
    horizon: int
    doc: str = ""
    hidden_sizes: tuple[int, ...] = (100, 100)
    sampler: Callable[[np.random.Generator], np.ndarray] | None = field(default=None, compare=False)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the parameters, in spec order."""
        return tuple(spec.name for spec in self.specs)

    def spec(self, name: str) -> ParamSpec:
        """The spec of one parameter."""
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no parameter {name!r}; valid: {self.param_names}")

    def _unit(self, params: Mapping[str, ParamValue]) -> np.ndarray:
        return np.concatenate([spec.to_unit(params[spec.name]) for spec in self.specs])

    def _from_unit(self, unit: np.ndarray) -> dict[str, ParamValue]:
        values: dict[str, ParamValue] = {}
        offset = 0
        for spec in self.specs:
            values[spec.name] = spec.from_unit(unit[offset : offset + spec.dims])
            offset += spec.dims
        return values

    def split_of(self, params: Mapping[str, ParamValue]) -> Split:
        """The split that a parameter setting belongs to (families with fixed tasks: train)."""
        if isinstance(self.split_rule, FixedTasks):
            return "train"
        return self.split_rule.split_of(self._unit(params))

    def sample_tasks(self, n: int, split: Split = "train", seed: int = 0) -> list[Task]:
        """Draw ``n`` tasks of one split, identically on every machine for the same seed.

        Draws come from ``numpy``'s PCG64 seeded with ``(seed, split)``, by rejection from the
        family's prior, so the first ``k`` tasks of a longer draw equal a draw of ``k`` tasks.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if n < 0:
            raise ValueError(f"number of tasks must be >= 0, got {n}")
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
        if isinstance(self.split_rule, FixedTasks):
            fixed = self.split_rule.values
            picks = (
                rng.permutation(len(fixed)) if n <= len(fixed) else rng.integers(len(fixed), size=n)
            )
            return [self._make(dict(fixed[k]), split, i) for i, k in enumerate(picks[:n])]
        tasks: list[Task] = []
        dims = sum(spec.dims for spec in self.specs)
        while len(tasks) < n:
            unit = self.sampler(rng) if self.sampler is not None else rng.random(dims)
            params = self._from_unit(np.asarray(unit))
            if self.split_of(params) == split:
                tasks.append(self._make(params, split, len(tasks)))
        return tasks

    def make_task(self, index: int = -1, **params: ParamValue) -> Task:
        """Build a task by hand; its split follows from where its parameters lie."""
        self._check_params(params)
        return self._make(dict(params), self.split_of(params), index)

    def _make(self, params: dict[str, ParamValue], split: Split, index: int) -> Task:
        return Task(self.name, split, index, _freeze_params(params))

    def validate(self, task: Task) -> None:
        """Raise ``ValueError`` unless ``task`` belongs to this family and its declared split."""
        if not isinstance(task, Task):
            raise ValueError(f"expected a metarobot Task, got {type(task).__name__}: {task!r}")
        if task.family != self.name:
            raise ValueError(f"task of family {task.family!r} given to {self.name!r}")
        self._check_params(dict(task.params))
        actual = self.split_of(dict(task.params))
        if not isinstance(self.split_rule, FixedTasks) and actual != task.split:
            raise ValueError(
                f"task {task.params} is labelled {task.split!r} but lies in the {actual!r} region "
                f"of {self.name} ({self.split_rule.describe()})"
            )

    def _check_params(self, params: Mapping[str, object]) -> None:
        if set(params) != set(self.param_names):
            raise ValueError(
                f"{self.name} takes parameters {self.param_names}, got {tuple(sorted(params))}"
            )
        if isinstance(self.split_rule, FixedTasks):
            allowed = [dict(v) for v in self.split_rule.values]
            if dict(_freeze_params(params)) not in [dict(_freeze_params(v)) for v in allowed]:
                raise ValueError(f"{self.name} task {dict(params)} is not one of {allowed}")
            return
        for spec in self.specs:
            value = np.atleast_1d(np.asarray(params[spec.name], dtype=np.float64))
            if value.shape != (spec.dims,):
                raise ValueError(
                    f"{self.name}.{spec.name} must have {spec.dims} value(s), got {value.tolist()}"
                )
            if (
                not np.all(np.isfinite(value))
                or np.any(value < spec.low)
                or np.any(value > spec.high)
            ):
                raise ValueError(
                    f"{self.name}.{spec.name} = {value.tolist() if spec.size else value[0]} "
                    f"is out of range {spec.describe_range()}"
                )
