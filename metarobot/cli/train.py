"""``metarobot train``: meta-train an agent on a task family, with checkpoints and resume.

``--resume`` starts from the run's saved config, so flags there are changes to it; only how
long and how a run executes may change (see ``RESUMABLE_FIELDS``), and the change is saved;
anything else is refused.
``SIGINT`` (Ctrl-C) and ``SIGTERM`` (a scheduler's preemption) stop the run after checkpointing
its last complete iteration; after Ctrl-C the exit code is 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Any

from metarobot.run.config import ADAPT_ON, DEVICES, RunConfig, load_config, tomllib
from metarobot.sampling import SAMPLER_BACKENDS

INTERRUPTED = 130
"""Exit code after an interrupt (128 + SIGINT, as shells report it)."""


def add_parser(commands: Any) -> None:
    """Register the ``train`` sub-command; every flag maps onto a ``RunConfig`` field."""
    parser = commands.add_parser("train", help="meta-train an agent on a task family")
    parser.add_argument("--out", type=Path, required=True, help="run directory to create")
    parser.add_argument("--config", type=Path, help="TOML file with [run] and [agent] tables")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--family", help="task family (see `metarobot list`)")
    parser.add_argument(
        "--agent", help="agent: maml, reptile, leo, ppo-scratch or ppo-multitask (baselines)"
    )
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--meta-batch-size", type=int, help="train tasks per iteration")
    parser.add_argument("--episodes-per-task", type=int, help="rollouts per task and step")
    parser.add_argument("--horizon", type=int, help="episode length (default: the family's)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", help="policy hidden layers")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=DEVICES)
    parser.add_argument("--backend", choices=SAMPLER_BACKENDS, help="sampler backend")
    parser.add_argument("--workers", type=int, help="sampler worker processes or Ray actors")
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="Ray cluster to join (host:port, or 'auto'; sets RAY_ADDRESS); without it the ray "
        "backend joins a cluster started on this machine by `ray start`, else starts one",
    )
    parser.add_argument(
        "--adapt-on",
        choices=ADAPT_ON,
        help="run the inner loop on the driver (default; its --device) or on the Ray workers",
    )
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--keep-checkpoints", type=int, help="most recent checkpoints kept")
    parser.add_argument(
        "--keep-every",
        type=int,
        help="also keep the checkpoints at multiples of this iteration, to choose one later",
    )
    parser.add_argument(
        "--update-threads", type=int, help="CPU threads of the meta-update (default: every core)"
    )
    parser.add_argument("--first-order", action="store_true", help="first-order MAML")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="agent hyperparameter override, e.g. --set inner_lr=0.05 (repeatable)",
    )
    parser.add_argument(
        "--env-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="keyword of the family's env, as gymnasium.make takes it, e.g. "
        "--env-option terminate_when_unhealthy=false (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def parse_value(text: str) -> Any:
    """Interpret an override as TOML would (numbers, booleans), else keep the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` flags as a mapping, values read as TOML would read them."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        values[key.strip()] = parse_value(value.strip())
    return values


def resolve_configs(args: argparse.Namespace) -> tuple[RunConfig, dict[str, Any]]:
    """Defaults (the run's saved config with ``--resume``), the ``--config`` file, then flags."""
    run_values: dict[str, Any] = {}
    agent_values: dict[str, Any] = {}
    if args.resume:
        saved_run, saved_agent = load_config(args.out / "config.toml")
        run_values.update(vars(saved_run))
        agent_values.update(saved_agent)
    if args.config:
        file_run, file_agent = load_config(args.config)
        run_values.update(vars(file_run))
        agent_values.update(file_agent)
    for f in fields(RunConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            run_values[f.name] = value
    agent_values.update(parse_assignments(args.set, "--set"))
    if args.env_option:
        env_options = dict(run_values.get("env_options", {}))
        env_options.update(parse_assignments(args.env_option, "--env-option"))
        run_values["env_options"] = env_options
    if args.first_order:
        agent_values["first_order"] = True
    return RunConfig.from_mapping(run_values), agent_values


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    """Train, then print where the results are."""
    from metarobot.run.training import train

    config, agent_values = resolve_configs(args)
    if args.ray_address:
        if config.backend != "ray":
            raise ValueError(f"--ray-address needs --backend ray, not {config.backend!r}")
        os.environ["RAY_ADDRESS"] = args.ray_address
    # SIGINT explicitly too: a process started with it ignored (a shell's background job, a
    # child of such a process) would otherwise inherit the ignoring and could not be stopped.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        parts = train(
            config, args.out, agent_values, resume=args.resume, progress=not args.no_progress
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the last complete iteration is checkpointed in {args.out}; "
            f"continue with: metarobot train --out {args.out} --resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    parts.close()
    print(f"run directory: {args.out}  (metrics.csv, tensorboard/, checkpoints/, config.toml)")
    return 0
