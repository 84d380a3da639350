"""How often a run's ant is upside down, before and after one step: is it upright to run at all?

An Ant family rewards motion, and an ant on its back barely moves: if most episodes end upside
down, an inner policy-gradient step and the meta-update have little running to work with. This
measures it on a committed run, on the very episodes of steps 0 and 1 of ``metarobot evaluate``
(the same test tasks, seeds and adaptation), so its returns are ``test.json``'s first two
columns. For each checkpoint asked for and each step: the mean return, the mean task term per
step (``reward_forward``: the direction-signed velocity on AntFwdBack), the share of steps with
the torso upside down (its z axis below the horizon) and the share of episodes whose last step
is.

Usage::

    python scripts/ant_posture.py benchmarks/results/AntFwdBack-maml-no-termination-s0  # 0, latest

Writes ``posture.md`` in the run folder.
"""

from __future__ import annotations

import sys

import torch
from episode_lengths import (  # a sibling script
    evaluated_episodes,
    run_and_checkpoints,
    write_report,
)

from metarobot.cli.evaluate import EVAL_SEED, EVAL_TASKS, PAPER_ROLLOUTS
from metarobot.episodes import Episodes
from metarobot.run.config import load_config

TORSO_QUATERNION = slice(1, 5)
"""Where an Ant observation holds the torso's orientation (w, x, y, z): Ant-v5's observation
starts with qpos[2:], the torso's height then its quaternion."""


def upside_down(observations: torch.Tensor) -> torch.Tensor:
    """Whether each Ant observation's torso z axis points below the horizon (its shape less one).

    That axis's vertical component is ``1 - 2 (x^2 + y^2)`` for a unit quaternion (w, x, y, z).
    """
    quaternion = observations[..., TORSO_QUATERNION]
    return 1 - 2 * (quaternion[..., 1] ** 2 + quaternion[..., 2] ** 2) < 0


def posture(episodes: Episodes) -> dict[str, float]:
    """Mean return, task term per step, share of steps and of last steps upside down."""
    masks = episodes.masks
    flipped = upside_down(episodes.observations).float()
    last = (episodes.episode_lengths().long() - 1).clamp(min=0)
    last_flipped = flipped.gather(-1, last.unsqueeze(-1)).squeeze(-1)
    per_step = masks.sum()
    return {
        "return": episodes.episode_returns().mean().item(),
        "task term / step": ((episodes.infos["reward_forward"] * masks).sum() / per_step).item(),
        "steps upside down": ((flipped * masks).sum() / per_step).item(),
        "episodes ending upside down": last_flipped.mean().item(),
    }


def main() -> int:
    run, checkpoints = run_and_checkpoints(__doc__)
    family = load_config(run / "config.toml")[0].family
    if not family.startswith("Ant"):
        raise SystemExit(f"{run} trains {family}: this reads an Ant's torso")
    columns = ["return", "task term / step", "steps upside down", "episodes ending upside down"]
    lines = [
        f"# Posture before and after one step: {run.name}",
        "",
        f"{EVAL_TASKS} unseen test tasks x {PAPER_ROLLOUTS} episodes, the episodes of steps 0 "
        f"and 1 of `metarobot evaluate {run} --tasks {EVAL_TASKS} --seed {EVAL_SEED} "
        f"--rollouts {PAPER_ROLLOUTS}` (so the returns are its first two columns). Upside down: "
        "the torso's z axis points below the horizon. Written by `python "
        f"scripts/ant_posture.py {run} --checkpoints {' '.join(map(str, checkpoints))}`.",
        "",
        "| checkpoint | adaptation steps | " + " | ".join(columns) + " |",
        "|---:|---:|" + "---:|" * len(columns),
    ]
    for checkpoint in checkpoints:
        _, episodes = evaluated_episodes(run, checkpoint, adapt_steps=1)
        for step, row in enumerate(map(posture, episodes)):
            cells = [
                f"{row['return']:.1f}",
                f"{row['task term / step']:+.3f}",
                f"{row['steps upside down']:.0%}",
                f"{row['episodes ending upside down']:.0%}",
            ]
            lines.append(f"| {checkpoint} | {step} | " + " | ".join(cells) + " |")
    return write_report(run / "posture.md", lines)


if __name__ == "__main__":
    sys.exit(main())
