"""Run configuration: one dataclass for a training run, saved as TOML beside its checkpoints.

The agent's own hyperparameters live in the agent's config dataclass; a run's ``config.toml``
holds both, as ``[run]`` and ``[agent]`` tables, fully resolved (no "auto" left) so a run can be
reproduced from the file alone.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from metarobot.files import atomic_write
from metarobot.sampling import SAMPLER_BACKENDS
from metarobot.tasks import TaskFamily

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda")
ADAPT_ON = ("driver", "workers")

RESUMABLE_FIELDS = (
    "iterations",
    "backend",
    "workers",
    "adapt_on",
    "checkpoint_every",
    "keep_checkpoints",
    "keep_every",
    "update_threads",
)
"""Fields a resumed run may change: how long it runs and how it is executed, never what it
computes (every backend and worker count gives the same episodes; the update's thread count
changes the last bits of its float sums only)."""

RESERVED_ENV_OPTIONS = frozenset(
    {"task", "horizon", "resample_tasks", "share_model", "render_mode", "width", "height"}
)
"""Env keywords a run sets itself (``horizon`` is a run field of its own)."""


@dataclass(frozen=True)
class RunConfig:
    """A meta-training run. Defaults follow the MAML paper's RL experiments.

    Attributes:
        family: Task family to meta-train on (``metarobot list`` shows them).
        agent: Meta-learner name (a key of ``agents.AGENTS``: maml, reptile, leo).
        iterations: Outer-loop updates.
        meta_batch_size: Train tasks sampled per iteration (MAML: 40; 20 for 2D navigation).
        episodes_per_task: Episodes per task for each inner step and for validation (MAML: 20).
        horizon: Episode length; 0 means the family's default.
        hidden_sizes: Policy hidden layers; empty means the family's (``TaskFamily.hidden_sizes``).
        seed: Drives task sampling, environment resets, action noise and initial weights.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        backend: Sampler backend: ``local`` (in-process), ``process`` (worker processes) or
            ``ray`` (Ray actors, on this machine or a cluster; see ``metarobot.sampling``).
        workers: Worker processes of the ``process`` backend, actors of the ``ray`` backend.
        adapt_on: Where the inner loop runs: ``driver`` (this process, on ``device``) or
            ``workers`` (the Ray actors, on their CPUs, with no round trip between the
            adaptation and validation rollouts); ``workers`` needs the ``ray`` backend.
        checkpoint_every: Iterations between checkpoints (the last one is always written).
        keep_checkpoints: Most recent checkpoints kept (the initial one is always kept).
        keep_every: Checkpoints at multiples of this iteration are kept too, so that one can
            be chosen afterwards on validation tasks (meta-training may trade adaptation for a
            better pre-adaptation policy late in a run); 0 keeps none beyond the newest.
        update_threads: CPU threads of the meta-update, while the sampler's workers wait; 0
            means every core. Sampling always runs single-threaded. A given count gives
            deterministic updates, so a run resumed with the same count repeats itself exactly.
        env_options: Keyword arguments for the family's env, as ``gymnasium.make`` takes them
            (e.g. ``terminate_when_unhealthy = false`` for an Ant); empty means the family's
            own settings. Every env of the run gets them: sampling, evaluation, rendering.
    """

    family: str = "PointNav2D"
    agent: str = "maml"
    iterations: int = 100
    meta_batch_size: int = 40
    episodes_per_task: int = 20
    horizon: int = 0
    hidden_sizes: tuple[int, ...] = field(default_factory=tuple)
    seed: int = 0
    device: str = "auto"
    backend: str = "local"
    workers: int = 1
    adapt_on: str = "driver"
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    keep_every: int = 0
    update_threads: int = 0
    env_options: dict[str, bool | int | float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = type_problems(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ValueError(f"invalid run config: {'; '.join(problems)}")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        problems = [
            f"{name}={getattr(self, name)!r} ({requirement})"
            for name, ok, requirement in (
                ("iterations", self.iterations >= 0, "must be >= 0"),
                ("meta_batch_size", self.meta_batch_size >= 1, "must be >= 1"),
                ("episodes_per_task", self.episodes_per_task >= 1, "must be >= 1"),
                ("horizon", self.horizon >= 0, "must be >= 0; 0 means the family default"),
                ("hidden_sizes", all(h > 0 for h in self.hidden_sizes), "must be positive"),
                ("device", self.device in DEVICES, f"must be one of {DEVICES}"),
                (
                    "backend",
                    self.backend in SAMPLER_BACKENDS,
                    f"must be one of {SAMPLER_BACKENDS}",
                ),
                ("workers", self.workers >= 1, "must be >= 1"),
                ("adapt_on", self.adapt_on in ADAPT_ON, f"must be one of {ADAPT_ON}"),
                (
                    "adapt_on",
                    self.adapt_on != "workers" or self.backend == "ray",
                    "'workers' needs backend='ray'",
                ),
                ("checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"),
                ("keep_checkpoints", self.keep_checkpoints >= 1, "must be >= 1"),
                ("keep_every", self.keep_every >= 0, "must be >= 0; 0 keeps none"),
                ("update_threads", self.update_threads >= 0, "must be >= 0; 0 means every core"),
                (
                    "env_options",
                    not RESERVED_ENV_OPTIONS & set(self.env_options),
                    f"may not set {sorted(RESERVED_ENV_OPTIONS)}: the run sets those itself",
                ),
            )
            if not ok
        ]
        if problems:
            raise ValueError(f"invalid run config: {'; '.join(problems)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from a TOML table, naming unknown keys."""
        valid = sorted(f.name for f in fields(cls))
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown run config fields {unknown}; valid: {valid}")
        return cls(**values)

    def resolved(self, family: TaskFamily) -> RunConfig:
        """Replace "family default" placeholders (from ``family``) and ``auto`` by values."""
        import torch

        hidden = self.hidden_sizes or family.hidden_sizes
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return replace(
            self, horizon=self.horizon or family.horizon, hidden_sizes=hidden, device=device
        )


def type_problems(cls: type[Any], values: Mapping[str, Any]) -> list[str]:
    """``name=value (must be ...)`` for each value that does not fit its dataclass field's type.

    Config values come from TOML files and ``--set`` overrides, where a typo easily turns a
    number into a string; checking types first turns what would be a ``TypeError`` deep in a
    comparison into a message naming the field. Understands ``int``, ``float`` (ints allowed),
    ``bool``, ``str``, ``tuple[X, ...]`` (lists allowed), ``dict[K, V]`` and unions; other
    types pass.
    """
    hints = typing.get_type_hints(cls)
    return [
        f"{name}={value!r} (must be {_describe(hints[name])})"
        for name, value in values.items()
        if name in hints and not _fits(value, hints[name])
    ]


def _fits(value: Any, kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return isinstance(value, list | tuple) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()
        )
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str or kind is type(None):
        return isinstance(value, kind)
    return True


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return f"a table of {_describe(args[1])} by {_describe(args[0])}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(kind, "None" if kind is type(None) else str(kind))


def save_config(path: Path, run: RunConfig, agent: Any) -> None:
    """Write ``[run]`` and ``[agent]`` tables atomically."""
    document = {"run": _plain(asdict(run)), "agent": _plain(asdict(agent))}
    atomic_write(path, tomli_w.dumps(document).encode())


def load_config(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    """Read a run's config; returns the run config and the raw agent table."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: is this a run directory?") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    if not isinstance(document.get("run"), dict):
        raise ValueError(f"{path} has no [run] table")
    agent = document.get("agent", {})
    if not isinstance(agent, dict):
        raise ValueError(f"{path}: [agent] must be a table, got {agent!r}")
    try:
        return RunConfig.from_mapping(document["run"]), dict(agent)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """TOML has no tuples or None: tuples become lists, None entries are dropped.

    Empty tables (their defaults) are dropped too, so configs of runs that predate a table
    keep their text.
    """
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in values.items()
        if v is not None and v != {}
    }
