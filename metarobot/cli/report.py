"""``metarobot report``: compare agents' adaptation on the same tasks, as Markdown and PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from metarobot.cli import evaluate


def add_parser(commands: Any) -> None:
    """Register the ``report`` sub-command."""
    parser = commands.add_parser(
        "report", help="compare agents: one table and one plot over runs and seeds"
    )
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        help="run directories (their latest evaluation of --split under --protocol) or "
        "evaluation JSON files",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    evaluate.add_protocol_argument(parser)
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="first evaluate each run's latest checkpoint, as `metarobot evaluate` does",
    )
    evaluate.add_evaluation_arguments(parser.add_argument_group("with --evaluate"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate if asked, pool runs by agent, write the report and print its headline table."""
    from metarobot.report import comparison_table, load_evaluation, pool, skill_table, write_report

    if args.evaluate:
        for run_dir in args.runs:
            evaluate.run(
                argparse.Namespace(
                    **{
                        **vars(args),
                        "run_dir": run_dir,
                        "checkpoint": None,
                        "inner_lr": None,
                        "out": None,
                    }
                )
            )
    rows = pool([load_evaluation(path, args.split, args.protocol) for path in args.runs])
    paths = write_report(rows, args.out)
    # Meta-World+ reports success per skill; the MAML paper, return.
    print(skill_table(rows) if rows[0].pooled.groups else comparison_table(rows, "return"))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0
