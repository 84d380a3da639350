"""Run configuration: one dataclass for a training run, saved as TOML beside its checkpoints.

The agent's own hyperparameters live in the agent's config dataclass; a run's ``config.toml``
holds both, as ``[run]`` and ``[agent]`` tables, fully resolved (no "auto" left) so a run can be
reproduced from the file alone.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BACKENDS = ("local", "process")
DEVICES = ("auto", "cpu", "cuda")


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
        hidden_sizes: Policy hidden layers; empty means 64x64 for PointNav2D, 100x100 otherwise.
        seed: Drives task sampling, environment resets, action noise and initial weights.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        backend: Sampler backend: ``local`` (in-process) or ``process`` (worker processes).
        workers: Worker processes for the ``process`` backend.
        checkpoint_every: Iterations between checkpoints (the last one is always written).
        keep_checkpoints: Most recent checkpoints kept (the initial one is always kept).
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
    checkpoint_every: int = 10
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
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
                ("backend", self.backend in BACKENDS, f"must be one of {BACKENDS}"),
                ("workers", self.workers >= 1, "must be >= 1"),
                ("checkpoint_every", self.checkpoint_every >= 1, "must be >= 1"),
                ("keep_checkpoints", self.keep_checkpoints >= 1, "must be >= 1"),
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

    def resolved(self, default_horizon: int) -> RunConfig:
        """Replace "family default" placeholders and ``auto`` by concrete values."""
        import torch

        hidden = self.hidden_sizes or ((64, 64) if self.family == "PointNav2D" else (100, 100))
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return replace(
            self, horizon=self.horizon or default_horizon, hidden_sizes=hidden, device=device
        )


def save_config(path: Path, run: RunConfig, agent: Any) -> None:
    """Write ``[run]`` and ``[agent]`` tables atomically."""
    document = {"run": _plain(asdict(run)), "agent": _plain(asdict(agent))}
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(document))
    tmp.replace(path)


def load_config(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    """Read a run's config; returns the run config and the raw agent table."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: is this a run directory?") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    if "run" not in document:
        raise ValueError(f"{path} has no [run] table")
    return RunConfig.from_mapping(document["run"]), dict(document.get("agent", {}))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """TOML has no tuples or None: tuples become lists, None entries are dropped."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}
