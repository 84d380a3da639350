"""How long a run's episodes last on each unseen task, and what they score: is ending early paying?

A family that ends episodes early (an Ant leaving its healthy height range) rewards ending them
when its per-step reward is negative, and a policy can learn that instead of the task. This
measures it on a committed run: for each test task, the mean episode length, the share of
episodes ended before the horizon, the mean return and the mean reward per step, before any
adaptation, at each checkpoint asked for. They are the very episodes of step 0 of ``metarobot
evaluate`` (the same tasks and seeds), so the returns are ``test.json``'s "0 steps" column.

Usage::

    python scripts/episode_lengths.py benchmarks/results/AntVel-maml-s0   # checkpoints 0, latest

Writes ``episode_lengths.md`` in the run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from metarobot.cli.evaluate import EVAL_SEED, EVAL_TASKS, PAPER_ROLLOUTS
from metarobot.episodes import Episodes
from metarobot.evaluation import Protocol, adaptation_episodes
from metarobot.run.checkpoints import list_checkpoints
from metarobot.run.directory import load_run
from metarobot.tasks import Task


def evaluated_episodes(
    run: Path, checkpoint: int, adapt_steps: int
) -> tuple[list[Task], list[Episodes]]:
    """The episodes of steps 0..``adapt_steps`` of ``metarobot evaluate`` on the test tasks.

    Shared with ``ant_posture.py``, which imports it from here.
    """
    parts, _ = load_run(run, checkpoint)
    try:
        tasks = parts.family.sample_tasks(EVAL_TASKS, "test", seed=EVAL_SEED)
        protocol = Protocol(adapt_steps, PAPER_ROLLOUTS)
        found = adaptation_episodes(parts.agent, parts.sampler, tasks, protocol, EVAL_SEED)
        return tasks, [episodes for _, _, episodes in found]
    finally:
        parts.close()


def episode_stats(run: Path, checkpoint: int) -> tuple[list[Task], torch.Tensor]:
    """Per test task: mean length, share ended early, mean return, mean reward per step."""
    tasks, (episodes,) = evaluated_episodes(run, checkpoint, adapt_steps=0)
    lengths = episodes.episode_lengths()
    returns = episodes.episode_returns()
    stats = torch.stack(
        [
            lengths.mean(dim=1),
            (lengths < episodes.horizon).float().mean(dim=1),
            returns.mean(dim=1),
            (returns / lengths).mean(dim=1),
        ],
        dim=1,
    )
    return tasks, stats


def parameters(task: Task) -> list[float]:
    """The task's parameter values, flattened, to sort tasks by."""
    return [float(v) for name in task.param_names for v in np.atleast_1d(task[name])]


def describe(task: Task) -> str:
    return ", ".join(
        f"{name} {np.round(np.asarray(task[name], dtype=float), 2).tolist()}"
        for name in task.param_names
    )


def run_and_checkpoints(doc: str | None) -> tuple[Path, list[int]]:
    """The command line of a script that measures a run: its folder and checkpoints to measure.

    Shared with ``ant_posture.py``, which imports it from here.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("run", type=Path, help="a run folder (its config.toml and checkpoints/)")
    parser.add_argument(
        "--checkpoints", type=int, nargs="+", help="checkpoints to measure (default: 0, latest)"
    )
    args = parser.parse_args()
    return args.run, args.checkpoints or [0, max(list_checkpoints(args.run / "checkpoints"))]


def write_report(path: Path, lines: list[str]) -> int:
    """Write a measurement's markdown beside the run's files and show it; the exit status."""
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return 0


def main() -> int:
    run, checkpoints = run_and_checkpoints(__doc__)
    measured = {checkpoint: episode_stats(run, checkpoint) for checkpoint in checkpoints}
    tasks = measured[checkpoints[0]][0]
    header = "| task | " + " | ".join(
        f"iteration {c}: length | ended early | return | reward / step" for c in checkpoints
    )
    lines = [
        f"# Episodes before adaptation: {run.name}",
        "",
        f"{len(tasks)} unseen test tasks x {PAPER_ROLLOUTS} episodes, the episodes of step 0 of "
        f"`metarobot evaluate {run} --tasks {EVAL_TASKS} --seed {EVAL_SEED} --rollouts "
        f"{PAPER_ROLLOUTS}`. "
        f"Written by `python scripts/episode_lengths.py {run} --checkpoints "
        f"{' '.join(map(str, checkpoints))}`.",
        "",
        header + " |",
        "|---|" + "---:|" * 4 * len(checkpoints),
    ]
    order = sorted(range(len(tasks)), key=lambda i: parameters(tasks[i]))
    for i in order:
        cells = [
            f"{s[0]:.0f} | {s[1]:.0%} | {s[2]:.1f} | {s[3]:+.3f}"
            for s in (measured[c][1][i].tolist() for c in checkpoints)
        ]
        lines.append(f"| {describe(tasks[i])} | " + " | ".join(cells) + " |")
    return write_report(run / "episode_lengths.md", lines)


if __name__ == "__main__":
    sys.exit(main())
