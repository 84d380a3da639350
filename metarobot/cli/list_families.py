"""``metarobot list``: every task family with its parameters, splits, horizon and sizes."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    """Register the ``list`` sub-command."""
    parser = commands.add_parser("list", help="list task families, their parameters and splits")
    parser.add_argument("--family", help="show only this family")
    parser.set_defaults(run=run)


def describe_family(name: str) -> str:
    """A multi-line description of one family, built from its live env."""
    import envs

    family = envs.get_family(name)
    env = envs.make(name)
    obs_size = env.observation_space.shape[0]  # type: ignore[index]
    act_size = env.action_space.shape[0]  # type: ignore[index]
    env.close()
    lines = [
        f"{name}  (gymnasium id metarobot/{name}-v0)",
        f"  {family.doc}",
        f"  horizon {family.horizon}, observation size {obs_size}, action size {act_size}",
        f"  splits: {family.split_rule.describe()}",
        "  parameters:",
    ]
    lines += [f"    {s.name:14s} {s.describe_range():32s} {s.doc}" for s in family.specs]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the families (all, or the one named by ``--family``)."""
    import envs

    names = [envs.get_family(args.family).name] if args.family else list(envs.FAMILIES)
    print("\n\n".join(describe_family(name) for name in names))
    return 0
