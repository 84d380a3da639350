"""The meta-training loop: sample a meta-batch, adapt, validate, update; log and checkpoint.

Every random draw of an iteration is derived from ``(seed, iteration)`` alone: tasks, environment
resets and action noise. A run resumed from the checkpoint of iteration ``i`` therefore repeats
exactly what the uninterrupted run did from ``i + 1`` on, and ends with the same parameters.

Faults the loop survives:

* Killed at any moment (``SIGKILL``, a power cut): checkpoints, ``metrics.csv`` and
  ``config.toml`` are only ever replaced whole (:func:`metarobot.checkpoints.atomic_write`), so
  ``--resume`` continues from the last checkpoint, losing at most ``checkpoint_every``
  iterations, and drops the metrics rows after it.
* Interrupted (``SIGINT``, ``KeyboardInterrupt``; or ``SystemExit``, which Ray's handler of
  ``SIGTERM`` raises): the iteration in progress is abandoned, the agent goes back to its state
  after the last complete iteration, that state is checkpointed, and the interrupt propagates.
* A non-finite update (NaN or infinity in a loss, in the agent's state after the update, or in
  the adapted parameters the validation rollouts would use): the update is dropped, the last
  good state kept, the iteration reported (``NonFiniteUpdateWarning``, ``losses/nonfinite``),
  and training goes on.
* Bad input (a corrupt checkpoint, one of another agent or family, an invalid config or
  override): a ``ValueError`` names the problem before anything in the run directory changes.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import agents
from agents.base import Agent, MetaBatch
from metarobot.checkpoints import (
    atomic_write,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    remove_temporary_files,
    save_checkpoint,
)
from metarobot.config import RESUMABLE_FIELDS, RunConfig, load_config, save_config, type_problems
from metarobot.episodes import Episodes
from metarobot.policies import GaussianMLPPolicy, Params, expand_params
from metarobot.runs import RunParts, build, derive_seed, resolve
from metarobot.sampling import NonFiniteParametersError
from metarobot.tasks import Task
from metarobot.threads import available_cores, torch_threads


class NonFiniteUpdateWarning(RuntimeWarning):
    """An iteration's update was dropped because it was not finite; training went on."""


class AgentAdaptation:
    """``agent.adapt`` as a callable that pickles to the agent's state rather than the agent.

    The Ray backend ships it to its actors to adapt there (``adapt_on="workers"``). Unpickled,
    it rebuilds the agent on the CPU from the run config and the state the agent had when it was
    pickled, i.e. at the start of this iteration: agents themselves need not be picklable (LEO
    holds a ``torch.Generator``), and an agent on a GPU still adapts on the actors' CPUs.

    Args:
        agent: The agent whose inner loop to run.
        config: The run's resolved config (which agent and policy to rebuild).
    """

    def __init__(self, agent: Agent[Any], config: RunConfig) -> None:
        self.agent = agent
        self.config = config

    def __call__(self, episodes: Episodes, params: Params) -> Params:
        """One inner-loop update (see :meth:`agents.base.Agent.adapt`)."""
        return self.agent.adapt(episodes, params)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        policy = self.agent.policy
        state = _to_cpu(self.agent.state_dict())
        return _cpu_adaptation, (self.config, policy.obs_dim, policy.act_dim, state)


def _cpu_adaptation(
    config: RunConfig, obs_dim: int, act_dim: int, state: dict[str, Any]
) -> AgentAdaptation:
    policy = GaussianMLPPolicy(obs_dim, act_dim, config.hidden_sizes)
    agent = agents.make_agent(config.agent, policy, None, "cpu")
    agent.load_state_dict(state)
    return AgentAdaptation(agent, replace(config, device="cpu"))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value


def collect_meta_batch(parts: RunParts, tasks: list[Task], seed: int) -> MetaBatch:
    """Adaptation rollouts for each inner step, then validation rollouts with adapted params.

    Raises:
        NonFiniteParametersError: An inner step produced NaN or infinite parameters.
    """
    agent, config = parts.agent, parts.config
    params = expand_params(
        {k: v.detach() for k, v in agent.policy.meta_parameters().items()}, len(tasks)
    )
    seeds = [derive_seed(seed, step) for step in range(agent.num_inner_steps + 1)]
    rounds = parts.sampler.sample_adaptation(
        tasks,
        params,
        config.episodes_per_task,
        seeds,
        AgentAdaptation(agent, config),
        on_workers=config.adapt_on == "workers",
    )
    return MetaBatch(train=rounds[:-1], valid=rounds[-1])


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


def _save(parts: RunParts, run_dir: Path, iteration: int) -> None:
    directory = run_dir / "checkpoints"
    save_checkpoint(checkpoint_path(directory, iteration), _checkpoint_state(parts, iteration))
    prune_checkpoints(directory, parts.config.keep_checkpoints)


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


def _start(
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
        _save(parts, run_dir, 0)
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
        remove_temporary_files(run_dir)
        remove_temporary_files(run_dir / "checkpoints")
        if state is None:  # killed before its first checkpoint: the start is reproducible
            _save(parts, run_dir, 0)
    except BaseException:
        parts.close()
        raise
    return parts, start


def _all_finite(value: Any) -> bool:
    """Whether every tensor and float in a (nested) state or metrics mapping is finite."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(item) for item in value)
    return True


def _update_threads(config: RunConfig) -> AbstractContextManager[None]:
    """Every core (or ``update_threads``) for a CPU meta-update; the workers wait meanwhile."""
    if config.device != "cpu":
        return nullcontext()
    return torch_threads(config.update_threads or available_cores())


def _iterate(parts: RunParts, iteration: int) -> dict[str, float]:
    """Sample, adapt and update once; returns the iteration's metrics.

    A non-finite update leaves the agent as it was (the caller restores it) and reports
    ``losses/nonfinite = 1``; the episodes' metrics are kept when there are episodes.
    """
    config, agent = parts.config, parts.agent
    seed = derive_seed(config.seed, iteration)
    tasks = parts.family.sample_tasks(config.meta_batch_size, "train", seed=seed)
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    problem = ""
    try:
        batch = collect_meta_batch(parts, tasks, seed)
    except NonFiniteParametersError as error:
        problem = f"an inner step gave non-finite parameters ({error})"
    sampled = time.perf_counter()
    if not problem:
        with _update_threads(config):
            metrics = agent.meta_update(batch)
        if not _all_finite(metrics):
            bad = sorted(key for key, value in metrics.items() if not math.isfinite(value))
            problem = f"non-finite {', '.join(bad)}"
        elif not _all_finite(agent.state_dict()):
            problem = "the update made the agent's parameters non-finite"
        metrics.update(adaptation_metrics(batch))
    if problem:
        warnings.warn(
            f"iteration {iteration}: {problem}; the update is dropped and the agent keeps its "
            "last good parameters",
            NonFiniteUpdateWarning,
            stacklevel=3,
        )
        metrics = {k: v for k, v in metrics.items() if not k.startswith(("losses/", "meta/"))}
    metrics["losses/nonfinite"] = float(bool(problem))
    metrics["time/sampling"] = sampled - started
    metrics["time/update"] = time.perf_counter() - sampled
    return metrics


def train(
    config: RunConfig,
    run_dir: Path,
    agent_config: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> RunParts:
    """Meta-train (or resume) a run in ``run_dir``; returns its parts with the final agent.

    Args:
        config: The run configuration. When resuming, it must equal the saved one but for the
            fields of :data:`~metarobot.config.RESUMABLE_FIELDS` (more iterations, another
            backend or worker count), which it may change.
        run_dir: Run directory: ``config.toml``, ``metrics.csv``, ``tensorboard/``,
            ``checkpoints/``.
        agent_config: The agent's config dataclass or a mapping of its fields; when resuming,
            only values equal to the saved ones (or nothing).
        resume: Continue from the directory's last checkpoint.
        progress: Show a progress bar.

    Raises:
        ValueError: On bad input, before anything in ``run_dir`` changes.
        KeyboardInterrupt: After checkpointing the last complete iteration (also
            ``SystemExit``).
    """
    parts, start = _start(config, agent_config, run_dir, resume)
    config = parts.config
    saved = start
    # (last complete iteration, the agent's state after it if the agent has moved on since):
    # one tuple, assigned at once, so that an interrupt never sees the two out of step.
    complete: tuple[int, dict[str, Any] | None] = (start, None)
    log = MetricsLog(run_dir, start)
    bar = tqdm(
        range(start + 1, config.iterations + 1),
        initial=start,
        total=config.iterations,
        disable=not progress,
        desc=f"{config.agent} on {config.family}",
    )
    try:
        for iteration in bar:
            good = copy.deepcopy(parts.agent.state_dict())
            complete = (iteration - 1, good)
            metrics = _iterate(parts, iteration)
            if metrics["losses/nonfinite"]:
                parts.agent.load_state_dict(good)
            log.append(iteration, metrics)
            complete = (iteration, None)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                _save(parts, run_dir, iteration)
                saved = iteration
            after = f"adapt/step_{parts.agent.num_inner_steps}/return"
            bar.set_postfix(
                before=f"{metrics.get('adapt/step_0/return', math.nan):.1f}",
                after=f"{metrics.get(after, math.nan):.1f}",
            )
    except (KeyboardInterrupt, SystemExit):  # SystemExit: Ray's own SIGTERM handler
        last, state = complete
        if state is not None:
            parts.agent.load_state_dict(state)
        if last != saved:
            _save(parts, run_dir, last)
        parts.close()
        raise
    except BaseException:
        parts.close()
        raise
    finally:
        log.close()
    return parts
