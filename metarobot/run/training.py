"""The meta-training loop: sample a meta-batch, adapt, validate, update; log and checkpoint.

Every random draw of an iteration is derived from ``(seed, iteration)`` alone: tasks, environment
resets and action noise. A run resumed from the checkpoint of iteration ``i`` therefore repeats
exactly what the uninterrupted run did from ``i + 1`` on, and ends with the same parameters.

Faults the loop survives:

* Killed at any moment (``SIGKILL``, a power cut): checkpoints, ``metrics.csv`` and
  ``config.toml`` are only ever replaced whole (:func:`metarobot.files.atomic_write`), so
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
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from metarobot.agent import MetaBatch
from metarobot.policies import detach_params, expand_params
from metarobot.run.build import RunParts
from metarobot.run.config import RunConfig
from metarobot.run.directory import MetricsLog, open_run, write_checkpoint
from metarobot.run.remote import AgentAdaptation
from metarobot.sampling import NonFiniteParametersError
from metarobot.seeding import derive_seed
from metarobot.tasks import Task
from metarobot.threads import cpu_threads


class NonFiniteUpdateWarning(RuntimeWarning):
    """An iteration's update was dropped because it was not finite; training went on."""


def collect_meta_batch(parts: RunParts, tasks: list[Task], seed: int) -> MetaBatch:
    """Adaptation rollouts for each inner step, then validation rollouts with adapted params.

    Raises:
        NonFiniteParametersError: An inner step produced NaN or infinite parameters.
    """
    agent, config = parts.agent, parts.config
    params = expand_params(detach_params(agent.policy.meta_parameters()), len(tasks))
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
    """Mean return, success and episode length before and after each inner step; unstable ones.

    A mean length below the horizon says episodes end early, which a policy may learn to do.
    """
    metrics: dict[str, float] = {}
    for step, episodes in enumerate([*batch.train, batch.valid]):
        metrics[f"adapt/step_{step}/return"] = episodes.episode_returns().mean().item()
        metrics[f"adapt/step_{step}/success"] = episodes.episode_success().float().mean().item()
        metrics[f"adapt/step_{step}/length"] = episodes.episode_lengths().mean().item()
    metrics["episodes/unstable"] = float(
        sum(int(e.unstable.sum()) for e in [*batch.train, batch.valid])
    )
    return metrics


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
        # Every core (or update_threads) for a CPU meta-update: the workers wait meanwhile.
        with cpu_threads(config.device, config.update_threads):
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
            fields of :data:`~metarobot.run.config.RESUMABLE_FIELDS` (more iterations, another
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
    parts, start = open_run(config, agent_config, run_dir, resume)
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
                write_checkpoint(parts, run_dir, iteration)
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
            write_checkpoint(parts, run_dir, last)
        parts.close()
        raise
    except BaseException:
        parts.close()
        raise
    finally:
        log.close()
    return parts
