"""The meta-training loop: sample a meta-batch, adapt, validate, update; log and checkpoint.

Every random draw of an iteration is derived from ``(seed, iteration)`` alone: tasks, environment
resets and action noise. A run resumed from the checkpoint of iteration ``i`` therefore repeats
exactly what the uninterrupted run did from ``i + 1`` on, and ends with the same parameters.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agents.base import MetaBatch
from metarobot.checkpoints import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from metarobot.config import RunConfig, load_config, save_config
from metarobot.episodes import Episodes
from metarobot.policies import expand_params
from metarobot.runs import RunParts, build, derive_seed, resolve
from metarobot.tasks import Task


def collect_meta_batch(parts: RunParts, tasks: list[Task], seed: int) -> MetaBatch:
    """Adaptation rollouts for each inner step, then validation rollouts with adapted params."""
    agent, config = parts.agent, parts.config
    params = expand_params(
        {k: v.detach() for k, v in agent.policy.meta_parameters().items()}, len(tasks)
    )
    train: list[Episodes] = []
    for step in range(agent.num_inner_steps):
        episodes = parts.sampler.sample(
            tasks, params, config.episodes_per_task, seed=derive_seed(seed, step)
        )
        train.append(episodes)
        params = agent.adapt(episodes, params)
    valid = parts.sampler.sample(
        tasks, params, config.episodes_per_task, seed=derive_seed(seed, agent.num_inner_steps)
    )
    return MetaBatch(train=train, valid=valid)


def adaptation_metrics(batch: MetaBatch) -> dict[str, float]:
    """Mean return and success before and after each inner step, and unstable episodes."""
    metrics: dict[str, float] = {}
    for step, episodes in enumerate([*batch.train, batch.valid]):
        metrics[f"adapt/step_{step}/return"] = episodes.episode_returns().mean().item()
        metrics[f"adapt/step_{step}/success"] = episodes.episode_success().float().mean().item()
    metrics["episodes/unstable"] = float(
        sum(int(e.unstable.sum()) for e in [*batch.train, batch.valid])
    )
    return metrics


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
        tmp = self.path.with_suffix(".csv.tmp")
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)

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


def _save(parts: RunParts, run_dir: Path, iteration: int) -> None:
    directory = run_dir / "checkpoints"
    save_checkpoint(checkpoint_path(directory, iteration), _checkpoint_state(parts, iteration))
    prune_checkpoints(directory, parts.config.keep_checkpoints)


def _start(
    config: RunConfig, agent_config: Any, run_dir: Path, resume: bool
) -> tuple[RunParts, int]:
    """Build the run, either fresh (writing config and checkpoint 0) or from its last checkpoint."""
    found = list_checkpoints(run_dir / "checkpoints")
    if resume:
        saved, agent_table = load_config(run_dir / "config.toml")
        if not found:
            raise ValueError(f"cannot resume {run_dir}: it has no checkpoint")
        iterations = config.iterations  # a resumed run may be asked to go further
        config = RunConfig.from_mapping({**asdict(saved), "iterations": iterations})
        parts = build(config, agent_table)
        start = max(found)
        state = load_checkpoint(
            found[start], expect={"agent_name": config.agent, "family": config.family}
        )
        parts.agent.load_state_dict(state["agent"])
        return parts, start
    if found or (run_dir / "config.toml").exists():
        raise ValueError(f"{run_dir} already holds a run: pass --resume, or choose another --out")
    config = resolve(config)
    parts = build(config, agent_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.toml", config, parts.agent.config)
    _save(parts, run_dir, 0)
    return parts, 0


def train(
    config: RunConfig,
    run_dir: Path,
    agent_config: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> RunParts:
    """Meta-train (or resume) a run in ``run_dir``; returns its parts with the final agent.

    Args:
        config: The run configuration (ignored but for ``iterations`` when resuming).
        run_dir: Run directory: ``config.toml``, ``metrics.csv``, ``tensorboard/``,
            ``checkpoints/``.
        agent_config: The agent's config dataclass or a mapping of its fields.
        resume: Continue from the directory's last checkpoint.
        progress: Show a progress bar.
    """
    parts, start = _start(config, agent_config, run_dir, resume)
    log = MetricsLog(run_dir, start)
    config = parts.config
    bar = tqdm(
        range(start + 1, config.iterations + 1),
        initial=start,
        total=config.iterations,
        disable=not progress,
        desc=f"{config.agent} on {config.family}",
    )
    try:
        for iteration in bar:
            seed = derive_seed(config.seed, iteration)
            tasks = parts.family.sample_tasks(config.meta_batch_size, "train", seed=seed)
            started = time.perf_counter()
            batch = collect_meta_batch(parts, tasks, seed)
            sampled = time.perf_counter()
            metrics = parts.agent.meta_update(batch)
            metrics.update(adaptation_metrics(batch))
            metrics["time/sampling"] = sampled - started
            metrics["time/update"] = time.perf_counter() - sampled
            log.append(iteration, metrics)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                _save(parts, run_dir, iteration)
            last = batch.valid
            bar.set_postfix(
                before=f"{metrics['adapt/step_0/return']:.1f}",
                after=f"{last.episode_returns().mean().item():.1f}",
            )
    except BaseException:
        parts.close()
        raise
    finally:
        log.close()
    return parts
