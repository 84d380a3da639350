"""``metarobot evaluate``: adaptation on unseen tasks, as a table, JSON, CSV and a plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    """Register the ``evaluate`` sub-command."""
    parser = commands.add_parser("evaluate", help="measure adaptation on unseen tasks")
    parser.add_argument("run_dir", type=Path, help="a run directory written by `metarobot train`")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--tasks", type=int, default=40, help="number of tasks")
    parser.add_argument("--adapt-steps", type=int, default=3, help="largest number of steps K")
    parser.add_argument("--rollouts", type=int, help="episodes per task and step (default: run's)")
    parser.add_argument("--checkpoint", type=int, help="iteration to load (default: latest)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of tasks and rollouts")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/eval)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table and file paths."""
    from metarobot.evaluation import evaluate_adaptation, write_results
    from metarobot.runs import load_run

    parts, iteration = load_run(args.run_dir, args.checkpoint, args.device)
    try:
        tasks = parts.family.sample_tasks(args.tasks, args.split, seed=args.seed)
        result = evaluate_adaptation(
            parts.agent,
            parts.sampler,
            tasks,
            args.adapt_steps,
            args.rollouts or parts.config.episodes_per_task,
            seed=args.seed,
            label=f"{parts.config.agent} @ iteration {iteration}",
        )
    finally:
        parts.close()
    out = args.out or args.run_dir / "eval"
    stem = f"{args.split}_iter{iteration:06d}"
    paths = write_results(result, out, stem)
    print(result.table())
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0
