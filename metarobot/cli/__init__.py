"""The ``metarobot`` command: ``list``, ``train``, ``evaluate``, ``render``, ``report``.

Each command lives in its own module and registers its arguments on a sub-parser; heavy imports
(torch, MuJoCo) happen inside the command, so ``metarobot --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from metarobot.cli import evaluate, list_families, render, report, train


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per module."""
    parser = argparse.ArgumentParser(
        prog="metarobot", description="Meta reinforcement learning on simulated MuJoCo robots."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (list_families, train, evaluate, render, report):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ValueError as error:
        print(f"metarobot {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
