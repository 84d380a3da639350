"""How near a run's ant or cheetah runs to each unseen task's target velocity, step by step.

A goal-velocity family (HalfCheetahVel, AntVel) mixes its task term with survive, control and
contact terms, so a return that rises with adaptation does not say by itself that the policy
found its task's speed. This isolates it: for each test task, the mean forward velocity over
every real step of its episodes, and its distance to the task's target, after 0..3 adaptation
steps. They are the very episodes of ``metarobot evaluate`` (the same test tasks, seeds and
adaptation), so the returns are ``test.json``'s columns. The distance falls with the steps when
each task's speed moves toward its own target; a policy that runs at one speed for all does not.

Usage::

    python scripts/velocity_tracking.py benchmarks/results/HalfCheetahVel-maml-s0  # 0, latest

Writes ``velocity.md`` (a summary per checkpoint and step, then each task at the last checkpoint)
and ``velocity.png`` (target against reached velocity at the last checkpoint) in the run folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch
from episode_lengths import (  # a sibling script
    evaluated_episodes,
    run_and_checkpoints,
    write_report,
)

import envs
from metarobot.cli.evaluate import EVAL_ADAPT_STEPS, EVAL_SEED, EVAL_TASKS, PAPER_ROLLOUTS
from metarobot.episodes import Episodes
from metarobot.evaluation import adaptation_steps, cpu_model, mean_ci
from metarobot.run.config import load_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CPU_LINE = "measured on "
"""Precedes the CPU model in ``velocity.md``, for the test that checks it against the JSONs."""


def mean_velocity(episodes: Episodes) -> torch.Tensor:
    """Each task's mean forward velocity over the real steps of all its episodes: ``[N]``."""
    masks = episodes.masks
    return (episodes.infos["x_velocity"] * masks).sum(dim=(1, 2)) / masks.sum(dim=(1, 2))


def tracking(run: Path, checkpoint: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Targets ``[N]``, mean velocities ``[steps, N]`` and mean returns per step."""
    tasks, per_step = evaluated_episodes(run, checkpoint, EVAL_ADAPT_STEPS)
    targets = np.array([task.scalar("velocity") for task in tasks])
    velocities = np.stack([mean_velocity(episodes).numpy() for episodes in per_step])
    returns = [episodes.episode_returns().mean().item() for episodes in per_step]
    return targets, velocities, returns


def plot(targets: np.ndarray, velocities: np.ndarray, title: str, path: Path) -> None:
    """Reached against target velocity, one series per adaptation step, beside the diagonal."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    top = max(targets.max(), velocities.max()) * 1.05
    bottom = min(0.0, velocities.min() * 1.05)
    axes.plot([bottom, top], [bottom, top], color="0.6", linestyle="--", label="reached = target")
    for step, (reached, marker) in enumerate(zip(velocities, "osD^", strict=False)):
        axes.scatter(targets, reached, s=18, marker=marker, label=adaptation_steps(step))
    axes.set(xlabel="target velocity (m/s)", ylabel="mean velocity reached (m/s)", title=title)
    axes.set_xlim(bottom, top)
    axes.set_ylim(bottom, top)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    run, checkpoints = run_and_checkpoints(__doc__)
    family = envs.get_family(load_config(run / "config.toml")[0].family)
    if family.param_names != ("velocity",):
        raise SystemExit(f"{run} trains {family.name}, whose tasks are not target velocities")
    measured = {checkpoint: tracking(run, checkpoint) for checkpoint in checkpoints}
    last = checkpoints[-1]
    lines = [
        f"# Velocity reached against each task's target: {run.name}",
        "",
        f"{EVAL_TASKS} unseen test tasks x {PAPER_ROLLOUTS} episodes, the episodes of steps "
        f"0..{EVAL_ADAPT_STEPS} of `metarobot evaluate {run} --tasks {EVAL_TASKS} --seed "
        f"{EVAL_SEED} --rollouts {PAPER_ROLLOUTS} --adapt-steps {EVAL_ADAPT_STEPS}`, "
        f"{CPU_LINE}{cpu_model()} (so on the CPU its JSON names, the returns are its columns). "
        "Velocity: a task's mean forward velocity over every real step of its episodes; "
        "distance: its absolute difference from the task's target, mean ± 95% CI over tasks. "
        f"Written by `python scripts/velocity_tracking.py {run} --checkpoints "
        f"{' '.join(map(str, checkpoints))}`.",
        "",
        "| checkpoint | adaptation steps | return | distance to target (m/s) | velocity (m/s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for checkpoint, (targets, velocities, returns) in measured.items():
        for step, (reached, mean_return) in enumerate(zip(velocities, returns, strict=True)):
            distance, ci = mean_ci(np.abs(reached - targets))
            lines.append(
                f"| {checkpoint} | {step} | {mean_return:.1f} | {distance:.3f} ± {ci:.3f} "
                f"| {reached.mean():.3f} |"
            )
    targets, velocities, _ = measured[last]
    steps = " | ".join(adaptation_steps(step) for step in range(len(velocities)))
    lines += [
        "",
        f"Each task at iteration {last}, by target: the velocity reached after each step.",
        "",
        f"| target | {steps} |",
        "|---:|" + "---:|" * len(velocities),
    ]
    for i in np.argsort(targets, kind="stable"):
        lines.append(
            f"| {targets[i]:.2f} | " + " | ".join(f"{v:.2f}" for v in velocities[:, i]) + " |"
        )
    plot(targets, velocities, f"{run.name}, iteration {last}", run / "velocity.png")
    lines += ["", "![target against reached velocity](velocity.png)"]
    return write_report(run / "velocity.md", lines)


if __name__ == "__main__":
    sys.exit(main())
