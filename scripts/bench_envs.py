"""Env steps per second of every family, against raw ``mj_step`` and Gymnasium's own v5 env.

Each family is stepped with fixed random actions (no policy), resetting at its horizon and on
termination, twice: under an explicit task (the nominal one: physics multipliers 1, as in the
reference env) and under its default task (none given: the env draws one at ``reset(seed=0)``).
Each is compared with (a) raw ``mujoco.mj_step`` on the same compiled model, divided by the frame
skip, and (b) Gymnasium's v5 env for the same robot on the same model (a physics task's
multipliers are copied into it). Rounds interleave all measurements of a family; rates are
medians over rounds, ratios medians of the ratios within each round, written to
``benchmarks/envs.md``.

Usage: ``python scripts/bench_envs.py [--steps 5000] [--repeats 5] [--families HopperParams ...]
[--out benchmarks/envs.md]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import envs
from envs.base import MetaEnv
from envs.manipulation.metaworld_ml1 import import_metaworld, metaworld_installed
from metarobot.tasks import ParamValue, Task, TaskFamily

# Gymnasium ids, or "metaworld:<ML1 env name>".
REFERENCE = {
    "HalfCheetahVel": "HalfCheetah-v5",
    "HalfCheetahDir": "HalfCheetah-v5",
    "AntVel": "Ant-v5",
    "AntFwdBack": "Ant-v5",
    "AntDir": "Ant-v5",
    "AntGoal": "Ant-v5",
    "HopperParams": "Hopper-v5",
    "Walker2dParams": "Walker2d-v5",
    "Reach": "metaworld:reach-v3",
    "Push": "metaworld:push-v3",
    "PickPlace": "metaworld:pick-place-v3",
    "PickPlaceParams": "metaworld:pick-place-v3",
    "MetaWorldReach": "metaworld:reach-v3",
    "MetaWorldPush": "metaworld:push-v3",
    "MetaWorldPickPlace": "metaworld:pick-place-v3",
}


def nominal_task(family: TaskFamily) -> Task:
    """Unchanged physics where the family varies it (multipliers 1), like the reference env."""
    params: dict[str, ParamValue] = dict(family.sample_tasks(1, seed=0)[0].params)
    for spec in family.specs:
        if spec.log:
            params[spec.name] = 1.0 if spec.size == 0 else (1.0,) * spec.size
    return family.make_task(**params)


def reference_env(reference: str) -> gym.Env | None:
    """The reference env, bare; ``None`` for a Meta-World one where Meta-World is missing."""
    if not reference.startswith("metaworld:"):
        return gym.make(reference).unwrapped
    if not metaworld_installed():
        return None
    name = reference.removeprefix("metaworld:")
    ml1 = import_metaworld().ML1(name, seed=42)
    env: gym.Env = ml1.train_classes[name]()
    env.set_task(ml1.train_tasks[0])  # type: ignore[attr-defined]
    return env


def env_rate(env: gym.Env, steps: int, horizon: int) -> float:
    """Env steps per second, bare env (no wrappers), resetting every ``horizon`` steps."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, *env.action_space.shape)).astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[i])
        if terminated or truncated or (i + 1) % horizon == 0:
            env.reset()
    return steps / (time.perf_counter() - start)


def raw_rate(model: mujoco.MjModel, frame_skip: int, steps: int) -> float:
    """``mj_step`` calls per second on ``model``, expressed as env steps (``/ frame_skip``)."""
    data = mujoco.MjData(model)
    n = steps * frame_skip
    start = time.perf_counter()
    mujoco.mj_step(model, data, nstep=n)
    return n / (time.perf_counter() - start) / frame_skip


@dataclass(frozen=True)
class Row:
    """One family under one task: rates (medians over rounds) and within-round ratios."""

    family: str
    task: str
    ours: float
    raw: float
    reference: str
    reference_rate: float
    ratio_to_raw: float
    ratio_to_reference: float


def same_physics(reference: gym.Env, env: MetaEnv) -> None:
    """Copy the model fields that ``env``'s physics task changed into ``reference``'s model."""
    fields = getattr(env, "fields", ())  # the physics families' (envs.physics)
    if not fields:
        return
    model = reference.unwrapped.model  # type: ignore[attr-defined]
    for field in fields:
        getattr(model, field.param)[:] = getattr(env.model, field.param)
    mujoco.mj_setConst(model, reference.unwrapped.data)  # type: ignore[attr-defined]


def measure(name: str, steps: int, repeats: int) -> list[Row]:
    """Both tasks of one family, every measurement once per round."""
    family = envs.get_family(name)
    reference = REFERENCE.get(name, "")
    cases: dict[str, MetaEnv] = {
        "explicit": envs.make(name, task=nominal_task(family)),
        "default": envs.make(name),
    }
    horizon = family.horizon
    measures: dict[tuple[str, str], Callable[[], float]] = {}
    for label, env in cases.items():
        env.reset(seed=0)  # the default env draws its task here, as env_rate's reset will
        twin = reference_env(reference) if reference else None
        measures[label, "ours"] = lambda env=env: env_rate(env, steps, horizon)
        measures[label, "raw"] = lambda env=env: raw_rate(env.model, env.frame_skip, steps)
        if twin is not None:
            same_physics(twin, env)
            measures[label, "reference"] = lambda twin=twin: env_rate(twin, steps, horizon)
    rounds: dict[tuple[str, str], list[float]] = {key: [] for key in measures}
    for _ in range(repeats):
        for key, rate in measures.items():
            rounds[key].append(rate())
    rows = []
    for label in cases:
        ours, raw = rounds[label, "ours"], rounds[label, "raw"]
        twin_rates = rounds.get((label, "reference"), [float("nan")] * repeats)
        rows.append(
            Row(
                name,
                label,
                statistics.median(ours),
                statistics.median(raw),
                reference,
                statistics.median(twin_rates),
                median_ratio(ours, raw),
                median_ratio(ours, twin_rates),
            )
        )
    return rows


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the ratios of measurements taken in the same round."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--families", nargs="+", choices=list(envs.FAMILIES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/envs.md"))
    args = parser.parse_args()

    rows = []
    for name in args.families or envs.FAMILIES:
        for row in measure(name, args.steps, args.repeats):
            rows.append(row)
            print(
                f"{name:18s} {row.task:8s} {row.ours:7.0f} steps/s  ratio to raw mj_step "
                f"{row.ratio_to_raw:.2f}  to {row.reference or 'no reference'} "
                f"{row.ratio_to_reference:.2f}"
            )

    lines = [
        "# Env step throughput",
        "",
        f"`python scripts/bench_envs.py --steps {args.steps} --repeats {args.repeats}` on "
        f"{date.today()}, {platform.processor() or platform.machine()}, one core, "
        f"mujoco {mujoco.__version__}, gymnasium {gym.__version__}. Bare envs (no wrappers), "
        "random actions, reset at the horizon or on termination. Each family runs under an "
        "explicit task (the nominal one: physics multipliers 1) and under its default task "
        "(none given: the env draws one from the train split at `reset(seed=0)`).",
        "",
        "Raw = `mujoco.mj_step` on the same compiled model, divided by the frame skip. "
        "Reference = Gymnasium's own v5 env for the same robot on the same model (a physics "
        "task's multipliers copied into it), or Meta-World's ML1 env for the manipulation "
        "families (n/a where Meta-World is not installed). Each of "
        f"{args.repeats} rounds measures all of a family's envs back to back; rates are medians "
        "over rounds, ratios the median of the ratios within a round. The 2 CPU cores were "
        "shared with other jobs (a training run among them): absolute rates swing from run to "
        "run, the within-round ratios much less.",
        "",
        "| family | task | env steps/s | raw mj_step (env steps/s) | ratio to raw | reference "
        "| reference steps/s | ratio to reference |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        twin_cells = (
            "n/a | n/a"
            if np.isnan(row.reference_rate)
            else f"{row.reference_rate:.0f} | {row.ratio_to_reference:.2f}"
        )
        lines.append(
            f"| {row.family} | {row.task} | {row.ours:.0f} | {row.raw:.0f} | "
            f"{row.ratio_to_raw:.2f} | {row.reference or 'none'} | {twin_cells} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
