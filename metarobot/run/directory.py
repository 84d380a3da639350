"""A run directory: ``config.toml``, ``metrics.csv``, TensorBoard events and ``checkpoints/``.

Starting a run writes its resolved config and checkpoint 0; resuming checks that the config and
agent hyperparameters given agree with the saved ones (only :data:`RESUMABLE_FIELDS` may
change) before anything in the directory changes; :func:`load_run` rebuilds a trained run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import agents
from metarobot.agent import config_from_mapping
from metarobot.files import atomic_write, remove_temporary_files
from metarobot.run.build import RunParts, build, resolve
from metarobot.run.checkpoints import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from metarobot.run.config import (
    RESUMABLE_FIELDS,
    RunConfig,
    load_config,
    save_config,
    type_problems,
)


class MetricsLog:
    """Metrics to ``metrics.csv`` and TensorBoard, truncated to the checkpoint on resume."""

    def __init__(self, run_dir: Path, start_iteration: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.csv"
        self.rows = [r for r in self._read() if int(r["iteration"]) <= start_iteration]
        self._rewrite()
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_iteration + 1)

    def _read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def _rewrite(self) -> None:
        text = io.StringIO(newline="")
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, text.getvalue().encode())

    def append(self, iteration: int, metrics: Mapping[str, float]) -> None:
        """Record one iteration (the CSV is rewritten atomically, it is small)."""
        self.rows.append({"iteration": str(iteration), **{k: repr(v) for k, v in metrics.items()}})
        self._rewrite()
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, iteration)
        self.writer.flush()

    def close(self) -> None:
        """Flush TensorBoard."""
        self.writer.close()


def _checkpoint_state(parts: RunParts, iteration: int) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "agent": parts.agent.state_dict(),
        "family": parts.config.family,
        "agent_name": parts.config.agent,
        "run_config": asdict(parts.config),
    }


def write_checkpoint(parts: RunParts, run_dir: Path, iteration: int) -> None:
    """Checkpoint the run after ``iteration``; prune as ``keep_checkpoints``/``keep_every`` say."""
    directory = run_dir / "checkpoints"
    save_checkpoint(checkpoint_path(directory, iteration), _checkpoint_state(parts, iteration))
    config = parts.config
    prune_checkpoints(directory, config.keep_checkpoints, config.keep_every)


def _resumed_config(config: RunConfig, saved: RunConfig) -> RunConfig:
    """The saved config with the fields a resumed run may change taken from ``config``.

    Raises:
        ValueError: ``config`` differs from the saved config in a field that decides what the
            run computes (its family, agent, sizes, seed, device).
    """
    resolved = resolve(config)
    changed = [
        f"{f.name}={getattr(resolved, f.name)!r} (the run has {getattr(saved, f.name)!r})"
        for f in fields(RunConfig)
        if f.name not in RESUMABLE_FIELDS and getattr(resolved, f.name) != getattr(saved, f.name)
    ]
    if changed:
        raise ValueError(
            f"a resumed run keeps its config; cannot change {', '.join(changed)}. Only "
            f"{', '.join(RESUMABLE_FIELDS)} may change on --resume"
        )
    return replace(saved, **{name: getattr(config, name) for name in RESUMABLE_FIELDS})


def _check_agent_overrides(agent_config: Any, saved: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse agent hyperparameters that differ from those a resumed run was created with."""
    if is_dataclass(agent_config) and not isinstance(agent_config, type):
        given = asdict(agent_config)
    else:
        given = dict(agent_config or {})
    changed = [
        f"{key}={value!r} (the run has {saved.get(key)!r})"
        for key, value in given.items()
        if (list(value) if isinstance(value, tuple) else value) != saved.get(key)
    ]
    if changed:
        raise ValueError(
            f"cannot change the agent hyperparameters of the run in {run_dir} on resume: "
            f"{', '.join(changed)}"
        )


def check_agent_config(agent: str, values: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` naming every agent hyperparameter of the wrong type."""
    if agent in agents.AGENTS:
        problems = type_problems(agents.AGENTS[agent].config_class, values)
        if problems:
            raise ValueError(f"invalid {agent} hyperparameters: {'; '.join(problems)}")


def open_run(
    config: RunConfig, agent_config: Any, run_dir: Path, resume: bool
) -> tuple[RunParts, int]:
    """Build the run, either fresh (writing config and checkpoint 0) or from its last checkpoint.

    Everything that can be wrong is checked before the first write, so that a refused start
    leaves the run directory as it was.
    """
    if resume:
        return _resume(config, agent_config, run_dir)
    found = list_checkpoints(run_dir / "checkpoints")
    if found or (run_dir / "config.toml").exists():
        raise ValueError(f"{run_dir} already holds a run: pass --resume, or choose another --out")
    if isinstance(agent_config, Mapping):
        check_agent_config(config.agent, agent_config)
    config = resolve(config)
    parts = build(config, agent_config)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(run_dir / "config.toml", config, parts.agent.config)
        write_checkpoint(parts, run_dir, 0)
    except BaseException:
        parts.close()
        raise
    return parts, 0


def _resume(config: RunConfig, agent_config: Any, run_dir: Path) -> tuple[RunParts, int]:
    saved, agent_table = load_config(run_dir / "config.toml")
    config = _resumed_config(config, saved)
    _check_agent_overrides(agent_config, agent_table, run_dir)
    found = list_checkpoints(run_dir / "checkpoints")
    start = max(found, default=0)
    state = None
    if found:
        expect = {"agent_name": config.agent, "family": config.family}
        state = load_checkpoint(found[start], expect=expect)
    parts = build(config, agent_table)
    try:
        if state is not None:
            try:
                parts.agent.load_state_dict(state["agent"])
            except (KeyError, RuntimeError, TypeError, ValueError) as error:
                raise ValueError(
                    f"checkpoint {found[start]} does not fit the run in {run_dir}: {error}"
                ) from None
        if config != saved:  # the run's config.toml says what it now runs to, and how
            save_config(run_dir / "config.toml", config, parts.agent.config)
        remove_temporary_files(run_dir)
        remove_temporary_files(run_dir / "checkpoints")
        if state is None:  # killed before its first checkpoint: the start is reproducible
            write_checkpoint(parts, run_dir, 0)
    except BaseException:
        parts.close()
        raise
    return parts, start


def load_run(
    run_dir: Path,
    checkpoint: int | None = None,
    device: str | None = None,
    agent_overrides: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> tuple[RunParts, int]:
    """Rebuild a trained run from its directory and load a checkpoint (the latest by default).

    Args:
        run_dir: The run directory.
        checkpoint: Iteration to load; ``None`` for the latest.
        device: Where the agent computes; ``None`` keeps the run's.
        agent_overrides: Agent hyperparameters replacing the checkpoint's, validated as the
            agent's config is; meant for those that only steer adaptation (``inner_lr``), to ask
            how a trained agent adapts with another step size.
        **overrides: ``RunConfig`` fields replacing the run's (sampler backend, workers, ...).

    Returns:
        The run's parts and the iteration of the loaded checkpoint.
    """
    config, agent_table = load_config(run_dir / "config.toml")
    if device is not None:
        overrides["device"] = device
    if overrides:
        config = RunConfig.from_mapping({**config.__dict__, **overrides})
    config = resolve(config)  # an unknown family is named before any checkpoint is read
    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise ValueError(f"{run_dir} has no checkpoints yet")
    iteration = max(found) if checkpoint is None else checkpoint
    if iteration not in found:
        raise ValueError(f"{run_dir} has no checkpoint {iteration}; it has {sorted(found)}")
    state = load_checkpoint(
        checkpoint_path(run_dir / "checkpoints", iteration),
        expect={"agent_name": config.agent, "family": config.family},
    )
    parts = build(config, agent_table)  # starts the sampler's workers: checks come first
    try:
        parts.agent.load_state_dict(state["agent"])
        if agent_overrides:
            trained = parts.agent.config
            parts.agent.config = config_from_mapping(
                type(trained), {**asdict(trained), **agent_overrides}
            )
    except BaseException:
        parts.close()
        raise
    return parts, iteration
