"""``metarobot evaluate``: adaptation on unseen tasks: table, JSON, CSV, plot and Markdown."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EVAL_SEED = 1000
"""Default seed of evaluation tasks and rollouts (``metarobot render`` uses it too)."""
EVAL_TASKS = 40
"""Default number of evaluation tasks."""
MEDIA_SUFFIXES = (".png", ".gif", ".mp4")
"""Files of a run's ``videos/`` folder that the Markdown summary links."""


def add_parser(commands: Any) -> None:
    """Register the ``evaluate`` sub-command."""
    parser = commands.add_parser("evaluate", help="measure adaptation on unseen tasks")
    parser.add_argument("run_dir", type=Path, help="a run directory written by `metarobot train`")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--tasks", type=int, default=EVAL_TASKS, help="number of tasks")
    parser.add_argument("--adapt-steps", type=int, default=3, help="largest number of steps K")
    parser.add_argument("--rollouts", type=int, help="episodes per task and step (default: run's)")
    parser.add_argument("--checkpoint", type=int, help="iteration to load (default: latest)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of tasks and rollouts")
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
    paths.append(write_markdown(result.table(), paths, out / f"{stem}.md", args.run_dir / "videos"))
    print(result.table())
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def write_markdown(table: str, results: Sequence[Path], path: Path, videos: Path) -> Path:
    """Write a Markdown summary: the table, the plot inline, links to the data and the videos.

    Links are relative to ``path``, so the summary reads the same wherever the run directory is
    copied or published; videos are whatever ``metarobot render`` left in ``videos`` (pictures
    shown inline, MP4s linked).
    """
    from metarobot.rendering.output import atomic_output

    def link(target: Path) -> str:
        return Path(os.path.relpath(target.resolve(), path.parent.resolve())).as_posix()

    lines = [f"# Evaluation `{path.stem}`", "", table, ""]
    lines += [f"![adaptation curve]({link(p)})" for p in results if p.suffix == ".png"]
    data = [f"[{p.suffix.lstrip('.').upper()}]({link(p)})" for p in results if p.suffix != ".png"]
    lines += ["", "Data: " + ", ".join(data)]
    media = sorted(
        p
        for p in videos.glob("*")
        if p.suffix in MEDIA_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if media:
        lines += ["", "## Videos", ""]
        for item in media:
            shown = "!" if item.suffix != ".mp4" else ""
            lines.append(f"- {shown}[{item.name}]({link(item)})")
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
