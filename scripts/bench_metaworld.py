"""Benchmark ML10 sampling: env steps per second of our samplers against Meta-World's own loop.

One meta-batch of ``MetaWorldML10``: a task of each of its 10 training skills (Meta-World's
``ML10(seed=42)`` tasks), ``--episodes`` episodes each of 500 steps, sampled with the MAML policy
(two hidden layers of 100) by ``--backend process`` with 1 and 2 workers and, where Ray is
installed, by ``--backend ray`` with 2 actors. The reference is Meta-World's own envs stepped as
its vector envs step them: one env per task built with Meta-World's classes and tasks, stepped
round-robin with uniform random actions (no policy), each episode reset at 500 steps, in 1 and 2
processes (each taking half the tasks). Medians of ``--repeats`` calls, interleaved because the
machine may be shared, after a warm-up call that builds the envs. Ray runs last, since its
daemons take CPU time even while idle.

Usage: ``python scripts/bench_metaworld.py [--episodes 2] [--repeats 3]``, in the virtual
environment with Meta-World (``.venv-metaworld``). Writes ``benchmarks/metaworld.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_sampler import cpu_pressure, machine_info

from envs.manipulation.metaworld_multi import ML10
from envs.manipulation.metaworld_tasks import import_metaworld, metaworld_version
from metarobot.policies import GaussianMLPPolicy, detach_params, expand_params
from metarobot.run.build import sampler_env_fn
from metarobot.sampling import make_sampler

HORIZON = 500


def metaworld_loop(tasks: list[Any], episodes: int, seed: int, start: Any) -> float:
    """Build one Meta-World env per task, wait for the sibling loops, then time the episodes."""
    classes = import_metaworld().env_dict.ALL_V3_ENVIRONMENTS
    batch = []
    for task in tasks:
        env = classes[task.env_name]()
        env.set_task(task)
        batch.append(env)
    actions = np.random.default_rng(seed).uniform(-1, 1, (HORIZON, len(batch), 4))
    start.wait()
    started = time.perf_counter()
    for _ in range(episodes):
        for env in batch:
            env.reset()
        for step_actions in actions:
            for env, action in zip(batch, step_actions, strict=True):
                env.step(action)
    return time.perf_counter() - started


def metaworld_rate(tasks: list[Any], episodes: int, processes: int, seed: int) -> float:
    """Env steps/s of Meta-World's loop over ``tasks`` split between ``processes``."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        start = manager.Barrier(processes)
        slices = [tasks[i::processes] for i in range(processes)]
        seeds = [seed + i for i in range(processes)]
        seconds = pool.map(
            metaworld_loop, slices, [episodes] * processes, seeds, [start] * processes
        )
        return len(tasks) * episodes * HORIZON / max(seconds)


def markdown(
    rates: dict[str, list[float]], tasks: int, episodes: int, repeats: int, command: str
) -> str:
    """The results as Markdown: setting, machine, and each configuration against the reference."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    lines = [
        "# ML10 sampling throughput",
        "",
        f"Written by `python {command}` with Meta-World {metaworld_version()}.",
        "",
        f"A meta-batch of `MetaWorldML10`: {tasks} tasks (one per training skill) x {episodes} "
        f"episodes x {HORIZON} steps ({tasks * episodes * HORIZON:,} env steps per call). Our "
        "samplers run the MAML policy (2 x 100 tanh hidden units) on the CPU; Meta-World's loop "
        "steps Meta-World's own envs round-robin, one per task, with random actions and no "
        f"policy. Medians of {repeats} calls after a warm-up call.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine_info()),
        f"| other load during the run | CPU pressure (PSI some avg60) {cpu_pressure()} |",
        "",
        "| configuration | processes | env steps/s (median) | range | vs Meta-World's loop, "
        "same processes |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in rates.items():
        processes = int(name.rsplit("x", 1)[1])
        reference = medians[f"Meta-World's loop x{processes}"]
        lines.append(
            f"| {name} | {processes} | {medians[name]:,.0f} | {min(values):,.0f}-"
            f"{max(values):,.0f} | {medians[name] / reference:.2f} |"
        )
    lines += [
        "",
        "The ratio column compares configurations timed in turn under the same load (Ray's row "
        "excepted: it runs after the others, with its daemons). The x2 rows show what a second "
        "process adds only where a second core was free: see the CPU pressure above.",
    ]
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--episodes", type=int, default=2, help="episodes per task")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/metaworld.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    # The first task of each training skill, in Meta-World's order, ours and Meta-World's.
    tasks = ML10.skill_tasks("train", 1)
    benchmark = import_metaworld().ML10(seed=42)
    first = {}
    for task in benchmark.train_tasks:
        first.setdefault(task.env_name, task)
    theirs = [first[ML10.skill(task).env_name] for task in tasks]

    policy = GaussianMLPPolicy(39, 4, hidden_sizes=(100, 100))
    params = detach_params(expand_params(policy.meta_parameters(), len(tasks)))
    env_fn = sampler_env_fn(ML10.name)
    configurations = [("process", 1), ("process", 2)]
    if importlib.util.find_spec("ray") is not None:
        configurations.append(("ray", 2))
    rates: dict[str, list[float]] = {f"Meta-World's loop x{n}": [] for n in (1, 2)}
    rates |= {f"{backend} x{workers}": [] for backend, workers in configurations}

    def sample(backend: str, workers: int) -> None:
        with make_sampler(backend, env_fn, policy, workers) as sampler:
            sampler.sample(tasks, params, args.episodes, seed=10_000)  # builds the envs
            for repeat in range(args.repeats):
                if backend != "ray":
                    for n in (1, 2):
                        rate = metaworld_rate(theirs, args.episodes, n, seed=repeat)
                        rates[f"Meta-World's loop x{n}"].append(rate)
                sampler.sample(tasks, params, args.episodes, seed=repeat)
                assert sampler.last_stats is not None
                rates[f"{backend} x{workers}"].append(sampler.last_stats.steps_per_second)
                print({name: f"{values[-1]:,.0f}" for name, values in rates.items() if values})

    for backend, workers in configurations:
        if backend == "ray":
            import ray

            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        sample(backend, workers)
    command = " ".join(["scripts/bench_metaworld.py", *(argv or sys.argv[1:])])
    text = markdown(rates, len(tasks), args.episodes, args.repeats, command)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
