"""``metarobot evaluate``: adaptation on unseen tasks: table, JSON, CSV, plot and Markdown.

``--protocol maml`` (the default) measures fresh rollouts before and after each step on tasks
drawn from the split, as in the MAML paper; ``--protocol metaworld`` is Meta-World+'s, for the
Meta-World families (see :data:`metarobot.evaluation.METAWORLD_PLUS`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metarobot.evaluation import Protocol
    from metarobot.tasks import Task, TaskFamily

EVAL_SEED = 1000
"""Default seed of evaluation tasks and rollouts (``metarobot render`` uses it too)."""
EVAL_TASKS = 40
"""Default number of evaluation tasks."""
EVAL_ADAPT_STEPS = 3
"""Default largest number of adaptation steps: the MAML paper measures after 0..3."""
PAPER_ROLLOUTS = 20
"""Episodes per task and step in the MAML paper's evaluation (the default is the run's own)."""
MEDIA_SUFFIXES = (".png", ".gif", ".mp4")
"""Files of a run's ``videos/`` folder that the Markdown summary links."""
PROTOCOLS = ("maml", "metaworld")
"""Values of ``--protocol``."""


def add_parser(commands: Any) -> None:
    """Register the ``evaluate`` sub-command."""
    parser = commands.add_parser("evaluate", help="measure adaptation on unseen tasks")
    parser.add_argument("run_dir", type=Path, help="a run directory written by `metarobot train`")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    add_protocol_argument(parser)
    add_evaluation_arguments(parser)
    parser.add_argument("--checkpoint", type=int, help="iteration to load (default: latest)")
    parser.add_argument(
        "--inner-lr",
        type=float,
        help="adapt with this step size instead of the trained one (maml, reptile), to see how "
        "adaptation depends on it; files get an _inner_lr<value> suffix",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/eval)")
    parser.set_defaults(run=run)


def add_protocol_argument(parser: Any) -> None:
    """Add ``--protocol``; ``metarobot report`` shares it, to read and write the same files."""
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="maml",
        help="maml: the MAML paper's; metaworld: Meta-World+'s, for Meta-World families (the "
        "first --tasks tasks of each skill of the split, one step on 10 episodes, success over "
        "3 episodes of 500 steps, per skill)",
    )


def add_evaluation_arguments(parser: Any) -> None:
    """Add the tasks and budget of an evaluation; ``metarobot report --evaluate`` shares them."""
    parser.add_argument(
        "--tasks",
        type=int,
        help=f"number of tasks (default {EVAL_TASKS}; metaworld: per skill, 40)",
    )
    parser.add_argument(
        "--adapt-steps",
        type=int,
        help=f"largest number of steps K (default {EVAL_ADAPT_STEPS}; metaworld: 1)",
    )
    parser.add_argument(
        "--rollouts", type=int, help="episodes per task and step (default: run's; metaworld: 10)"
    )
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of tasks and rollouts")
    parser.add_argument("--device", choices=("cpu", "cuda"))


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table and file paths."""
    from metarobot.evaluation import METAWORLD_PLUS, Protocol, evaluate_protocol, write_results
    from metarobot.report import evaluation_stem
    from metarobot.run.directory import load_run

    metaworld = args.protocol == "metaworld"
    # Meta-World+ runs 500-step episodes whatever the run trained with.
    overrides = {"horizon": METAWORLD_PLUS.horizon} if metaworld else {}
    step_size = {} if args.inner_lr is None else {"inner_lr": args.inner_lr}
    parts, iteration = load_run(
        args.run_dir, args.checkpoint, args.device, agent_overrides=step_size, **overrides
    )
    label = f"{parts.config.agent} @ iteration {iteration}"
    if args.inner_lr is not None:
        label += f", inner_lr {args.inner_lr:g}"
    try:
        if metaworld:
            tasks, groups, protocol = metaworld_setting(parts.family, args)
        else:
            tasks = parts.family.sample_tasks(args.tasks or EVAL_TASKS, args.split, seed=args.seed)
            groups = []
            steps = EVAL_ADAPT_STEPS if args.adapt_steps is None else args.adapt_steps
            protocol = Protocol(steps, args.rollouts or parts.config.episodes_per_task)
        result = evaluate_protocol(
            parts.agent,
            parts.sampler,
            tasks,
            protocol,
            seed=args.seed,
            label=label,
            groups=groups,
        )
    finally:
        parts.close()
    out = args.out or args.run_dir / "eval"
    stem = evaluation_stem(args.split, iteration, args.protocol, args.inner_lr)
    paths = write_results(result, out, stem)
    paths.append(write_markdown(result.table(), paths, out / f"{stem}.md", args.run_dir / "videos"))
    print(result.table())
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def metaworld_setting(
    family: TaskFamily, args: argparse.Namespace
) -> tuple[list[Task], list[str], Protocol]:
    """Meta-World+'s tasks (the first ``--tasks`` of each skill), their skills and protocol."""
    from envs.manipulation.metaworld_tasks import MetaWorldFamily
    from metarobot.evaluation import METAWORLD_PLUS, METAWORLD_PLUS_TASKS

    if not isinstance(family, MetaWorldFamily):
        raise ValueError(
            f"--protocol metaworld is Meta-World+'s protocol, for the Meta-World families "
            f"(MetaWorldML10, MetaWorldML45, MetaWorld<Skill>; see `metarobot list`); "
            f"{family.name} is not one: use --protocol maml"
        )
    tasks = family.skill_tasks(args.split, args.tasks or METAWORLD_PLUS_TASKS)
    protocol = replace(
        METAWORLD_PLUS,
        adapt_steps=METAWORLD_PLUS.adapt_steps if args.adapt_steps is None else args.adapt_steps,
        rollouts=args.rollouts or METAWORLD_PLUS.rollouts,
    )
    return tasks, [family.skill(task).env_name for task in tasks], protocol


def write_markdown(table: str, results: Sequence[Path], path: Path, videos: Path) -> Path:
    """Write a Markdown summary: the table, the plot inline, links to the data and the videos.

    Links are relative to ``path``, so the summary reads the same wherever the run directory is
    copied or published; videos are whatever ``metarobot render`` left in ``videos`` (pictures
    shown inline, MP4s linked).
    """
    from metarobot.files import atomic_output

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
