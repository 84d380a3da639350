"""Env steps per second of every family, against raw ``mj_step`` and Gymnasium's own v5 env.

Each family is stepped with fixed random actions (no policy), resetting at its horizon, and
compared in the same run with (a) raw ``mujoco.mj_step`` on the same compiled model, divided by
the frame skip, and (b) Gymnasium's v5 env for the same robot built the same way. Medians of
several repeats are reported as ratios, written to ``benchmarks/envs.md``.

Usage: ``python scripts/bench_envs.py [--steps 5000] [--repeats 5] [--out benchmarks/envs.md]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import envs
from envs.manipulation.metaworld_ml1 import import_metaworld, metaworld_installed
from metarobot.tasks import ParamValue, Task, TaskFamily

# Gymnasium ids, or "metaworld:<ML1 env name>".
REFERENCE = {
    "HalfCheetahVel": "HalfCheetah-v5",
    "HalfCheetahDir": "HalfCheetah-v5",
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


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/envs.md"))
    args = parser.parse_args()

    rows = []
    for name in envs.FAMILIES:
        family = envs.get_family(name)
        env = envs.make(name, task=nominal_task(family))
        horizon = family.horizon
        ours = median_of(args.repeats, lambda env=env, h=horizon: env_rate(env, args.steps, h))
        raw = median_of(
            args.repeats, lambda env=env: raw_rate(env.model, env.frame_skip, args.steps)
        )
        reference = REFERENCE.get(name, "")
        twin = reference_env(reference) if reference else None
        twin_rate = float("nan")
        if twin is not None:
            twin_rate = median_of(
                args.repeats, lambda twin=twin, h=horizon: env_rate(twin, args.steps, h)
            )
        rows.append((name, ours, raw, reference, twin_rate))
        print(
            f"{name:18s} {ours:9.0f} steps/s  raw mj_step {raw:9.0f}  ratio {ours / raw:.2f}"
            f"  vs {reference or 'no reference'} {ours / twin_rate:.2f}"
        )

    lines = [
        "# Env step throughput",
        "",
        f"`python scripts/bench_envs.py --steps {args.steps} --repeats {args.repeats}` on "
        f"{date.today()}, {platform.processor() or platform.machine()}, one core, "
        f"mujoco {mujoco.__version__}, gymnasium {gym.__version__}. Medians of {args.repeats} "
        "runs; bare envs (no wrappers), random actions, reset at the horizon or on termination; "
        "physics families run their nominal task (all multipliers 1).",
        "",
        "Raw = `mujoco.mj_step` on the same compiled model, divided by the frame skip. "
        "Reference = Gymnasium's own v5 env for the same robot, or Meta-World's ML1 env for the "
        "manipulation families (n/a where Meta-World is not installed), measured in the same run.",
        "",
        "| family | env steps/s | raw mj_step (env steps/s) | ratio to raw | reference "
        "| reference steps/s | ratio to reference |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for name, ours, raw, reference, twin in rows:
        twin_cells = "n/a | n/a" if np.isnan(twin) else f"{twin:.0f} | {ours / twin:.2f}"
        lines.append(
            f"| {name} | {ours:.0f} | {raw:.0f} | {ours / raw:.2f} | {reference or 'none'} "
            f"| {twin_cells} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
