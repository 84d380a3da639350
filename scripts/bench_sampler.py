"""Benchmark the samplers: env steps per second of full rollout collection, policy included.

Collects ``tasks x episodes x horizon`` steps of ``HalfCheetahVel`` with the MAML policy (two
hidden layers of 100) through each backend (local; process, with the policy in the workers as
``--backend process`` runs a CPU policy and on the driver as it runs a GPU one; Ray, on a local
Ray started here), and compares the rate with what the physics alone allows: the raw
``mujoco.mj_step`` rate on the same model (measured in the same run), divided by the env's frame
skip, times the cores the backend uses. A second ratio compares with a bare ``env.step`` loop,
which isolates the sampler's own overhead from the env's Python code; a third compares the
others with ``--backend process`` on as many workers.

A second table times one meta-training iteration's rollouts (adaptation round, MAML inner step,
validation round) with the inner step on the driver (process and Ray backends) or on the Ray
actors. Configurations and the reference loops are interleaved, and medians are reported,
because the machine may be shared. Ray's configurations run last, in a phase of their own: its
daemons take CPU time even while idle, which would slow every other configuration.

Usage::

    python scripts/bench_sampler.py            # 20 tasks x 10 episodes x 200 steps, 5 repeats
    python scripts/bench_sampler.py --quick    # a smaller configuration, for a smoke test

Writes a Markdown table to ``benchmarks/sampler.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import multiprocessing.queues
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
import torch

import agents
import envs
from metarobot.evaluation import cpu_model
from metarobot.policies import GaussianMLPPolicy, detach_params, expand_params
from metarobot.run.build import sampler_env_fn
from metarobot.run.config import RunConfig
from metarobot.run.remote import AgentAdaptation
from metarobot.sampling import (
    LocalSampler,
    ProcessEnvSampler,
    ProcessSliceSampler,
    RaySampler,
    Sampler,
)

FAMILY = "HalfCheetahVel"
# The process backend as make_sampler builds it for a CPU policy, and with the policy kept on
# the driver (as for a GPU policy).
PROCESS = "process"
PROCESS_DRIVER = "process, policy on the driver"


@dataclass
class Result:
    """Measurements of one backend configuration."""

    name: str
    workers: int
    cores: int
    rates: list[float] = field(default_factory=list)
    policy_shares: list[float] = field(default_factory=list)

    def make(self, env_fn: Any, policy: GaussianMLPPolicy) -> Sampler:
        """The sampler this configuration measures."""
        if self.name == "local":
            return LocalSampler(env_fn, policy)
        if self.name == PROCESS:
            return ProcessSliceSampler(env_fn, policy, workers=self.workers)
        if self.name == PROCESS_DRIVER:
            return ProcessEnvSampler(env_fn, policy, workers=self.workers)
        return RaySampler(env_fn, policy, workers=self.workers)


@dataclass
class Adaptation:
    """Wall times of one iteration's rollouts with the inner step in one place."""

    label: str
    sampler: Sampler
    on_workers: bool
    seconds: list[float] = field(default_factory=list)


def mj_step_seconds(env: Any, steps: int, rng: np.random.Generator) -> float:
    """Seconds per raw ``mj_step`` on the env's model, controls changing every frame skip."""
    model, data, frame_skip = env.model, env.data, env.frame_skip
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    controls = rng.uniform(low, high, size=(steps // frame_skip + 1, model.nu))
    mujoco.mj_resetData(model, data)
    started = time.perf_counter()
    for i in range(steps):
        if i % frame_skip == 0:
            data.ctrl[:] = controls[i // frame_skip]
        mujoco.mj_step(model, data)
    return (time.perf_counter() - started) / steps


def _bare_loop(
    count: int, rounds: int, seed: int, start: Any, results: multiprocessing.queues.Queue
) -> None:
    """Build ``count`` envs, wait for the sibling loops, then time ``rounds`` round-robin steps."""
    tasks = envs.get_family(FAMILY).sample_tasks(20, seed=0)
    env_fn = sampler_env_fn(FAMILY)
    batch: list[Any] = [env_fn() for _ in range(count)]
    for i, env in enumerate(batch):
        env.set_task(tasks[i % len(tasks)])
        env.reset(seed=seed + i)
    space = batch[0].action_space
    rng = np.random.default_rng(seed)
    actions = rng.uniform(space.low, space.high, size=(rounds, count, space.shape[0]))
    actions = actions.astype(np.float32)
    start.wait()
    started = time.perf_counter()
    for k in range(rounds):
        for env, action in zip(batch, actions[k], strict=True):
            env.step(action)
    results.put(time.perf_counter() - started)


def bare_env_rate(cores: int, num_envs: int, seed: int, steps: int = 10_000) -> float:
    """Env steps/s of plain ``env.step`` loops in ``cores`` processes sharing ``num_envs`` envs.

    The ceiling of any batched sampler on this machine: the same envs, stepped round-robin
    (a batch of models does not stay in the CPU caches the way one hot env does), with no
    policy and no synchronization.
    """
    context = multiprocessing.get_context("forkserver")
    start, results = context.Barrier(cores), context.Queue()
    count = num_envs // cores
    rounds = max(1, steps // count)  # ``steps`` per process: long enough to average out noise
    processes = [
        context.Process(target=_bare_loop, args=(count, rounds, seed + i, start, results))
        for i in range(cores)
    ]
    for process in processes:
        process.start()
    seconds = max(results.get() for _ in processes)
    for process in processes:
        process.join()
    return count * cores * rounds / seconds


@dataclass
class Call:
    """What every timed call samples."""

    tasks: list[Any]
    params: dict[str, torch.Tensor]
    episodes: int
    horizon: int
    adapt: AgentAdaptation


def measure(
    results: list[Result],
    adaptation_kinds: list[tuple[str, str, bool]],
    workers: int,
    env_fn: Any,
    policy: GaussianMLPPolicy,
    call: Call,
    repeats: int,
    between: Callable[[int], None],
) -> list[Adaptation]:
    """Time ``results``' samplers, interleaved, ``repeats`` times; then the adaptation rounds.

    ``adaptation_kinds`` are ``(backend name, where, on_workers)`` timed on the samplers with
    ``workers`` workers; ``between(repeat)`` runs before each repeat (reference loops).
    """
    samplers: list[Sampler] = []
    try:
        for result in results:
            samplers.append(result.make(env_fn, policy))
            samplers[-1].sample(call.tasks, call.params, call.episodes, 10_000, call.horizon)
        by_name = {(r.name, r.workers): s for r, s in zip(results, samplers, strict=True)}
        adaptations = [
            Adaptation(f"{name} x{workers}, inner step on the {where}", by_name[name, workers], on)
            for name, where, on in adaptation_kinds
            if (name, workers) in by_name
        ]
        for repeat in range(repeats):
            between(repeat)
            for result, sampler in zip(results, samplers, strict=True):
                sampler.sample(call.tasks, call.params, call.episodes, repeat, call.horizon)
                stats = sampler.last_stats
                assert stats is not None
                result.rates.append(stats.steps_per_second)
                result.policy_shares.append(stats.policy_seconds / stats.seconds)
                print(
                    f"repeat {repeat}: {result.name} x{result.workers}: "
                    f"{stats.steps_per_second:,.0f} steps/s, policy {stats.policy_seconds:.2f} s "
                    f"of {stats.seconds:.2f} s"
                )
            for adaptation in adaptations:
                started = time.perf_counter()
                adaptation.sampler.sample_adaptation(
                    call.tasks, call.params, call.episodes, [repeat, repeat + 1], call.adapt,
                    call.horizon, on_workers=adaptation.on_workers,
                )  # fmt: skip
                adaptation.seconds.append(time.perf_counter() - started)
                print(f"repeat {repeat}: {adaptation.label}: {adaptation.seconds[-1]:.2f} s")
    finally:
        for sampler in samplers:
            sampler.close()
    return adaptations


def machine_info() -> list[tuple[str, str]]:
    cpu = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("machine", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("CPU", f"{cpu}, {cores} cores available"),
        ("python", platform.python_version()),
        ("torch", f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)"),
        ("mujoco", mujoco.__version__),
        ("gymnasium", gymnasium.__version__),
        ("numpy", np.__version__),
    ]


def cpu_pressure() -> str:
    """Linux PSI ``some avg60``: share of time runnable tasks waited for a CPU (other load)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return dict(item.split("=") for item in line.split()[1:])["avg60"] + "%"
    except (OSError, KeyError, IndexError):
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4 tasks x 5 episodes x 50 steps")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per backend")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process workers")
    parser.add_argument(
        "--ray-workers", type=int, nargs="*", default=[1, 2], help="Ray actors (none: skip Ray)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads of the driver; more than 1 fights the env workers for cores",
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/sampler.md"))
    args = parser.parse_args(argv)
    num_tasks, episodes, horizon = (4, 5, 50) if args.quick else (20, 10, 200)
    repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(args.torch_threads)

    env_fn = sampler_env_fn(FAMILY)
    tasks = envs.get_family(FAMILY).sample_tasks(num_tasks, split="train", seed=0)
    reference: Any = env_fn()
    frame_skip = int(reference.frame_skip)
    obs_dim, act_dim = reference.observation_space.shape[0], reference.action_space.shape[0]
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(100, 100))
    params = detach_params(expand_params(policy.meta_parameters(), num_tasks))
    reference.set_task(tasks[0])
    agent = agents.make_agent("maml", policy, None, "cpu")
    adapt = AgentAdaptation(agent, RunConfig(family=FAMILY, hidden_sizes=(100, 100)))
    call = Call(tasks, params, episodes, horizon, adapt)

    local_results = [Result("local", 1, 1)]
    local_results += [Result(PROCESS, w, w) for w in args.workers]
    local_results += [Result(PROCESS_DRIVER, w, w) for w in args.workers]
    ray_results = [Result("ray", w, w) for w in args.ray_workers]
    most = max(args.ray_workers, default=0)
    rng = np.random.default_rng(0)
    mj_seconds: list[float] = []
    env_rates: dict[int, list[float]] = {result.cores: [] for result in local_results}

    def measure_references(repeat: int) -> None:
        mj_seconds.append(mj_step_seconds(reference, 10_000 if args.quick else 40_000, rng))
        for cores, rates in env_rates.items():
            rates.append(bare_env_rate(cores, num_tasks * episodes, seed=repeat))

    print(f"sampling {num_tasks} tasks x {episodes} episodes x {horizon} steps")
    # Ray's daemons take CPU time even while idle, so the other backends (and the references)
    # are measured before Ray starts.
    adaptations = measure(
        local_results, [(PROCESS, "driver", False)], most, env_fn, policy, call, repeats,
        measure_references,
    )  # fmt: skip
    if ray_results:
        import ray

        # Logical CPUs for every actor of every configuration at once; they run one at a time.
        ray.init(num_cpus=sum(args.ray_workers), include_dashboard=False, log_to_driver=False)
        adaptations += measure(
            ray_results, [("ray", "driver", False), ("ray", "actors", True)], most, env_fn,
            policy, call, repeats, lambda repeat: None,
        )  # fmt: skip
        ray.shutdown()
    results = local_results + ray_results

    mj_limit = 1.0 / (statistics.median(mj_seconds) * frame_skip)
    env_limits = {cores: statistics.median(rates) for cores, rates in env_rates.items()}
    lines = [
        "# Sampler throughput",
        "",
        f"Written by `python {' '.join(['scripts/bench_sampler.py', *(argv or sys.argv[1:])])}`.",
        "",
        f"Full rollout collection of `{FAMILY}`: {num_tasks} tasks x {episodes} episodes x "
        f"{horizon} steps ({num_tasks * episodes * horizon:,} env steps per call), MAML policy "
        f"(2 x 100 tanh hidden units), batched over tasks with `batched_distribution`; medians "
        f"of {repeats} calls after a warm-up call.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine_info()),
        f"| other load during the run | CPU pressure (PSI some avg60) {cpu_pressure()}, "
        f"load average {os.getloadavg()[0]:.2f} |",
        "",
        f"Raw `mujoco.mj_step`: {statistics.median(mj_seconds) * 1e6:.2f} us, frame skip "
        f"{frame_skip}, so the physics limit is **{mj_limit:,.0f} env steps/s per core**. Bare "
        f"`env.step` loops over the same {num_tasks * episodes} envs (round-robin, no policy, "
        "no synchronization) reach "
        + ", ".join(
            f"{rate:,.0f} steps/s on {cores} core{'s' if cores > 1 else ''} "
            f"({rate / (mj_limit * cores):.2f} of the limit)"
            for cores, rate in env_limits.items()
        )
        + ".",
        "",
        "| backend | workers | cores | env steps/s (median) | range | vs mj_step limit x cores "
        "| vs bare env.step loops | vs `process`, same workers | policy share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    process_rates = {r.workers: statistics.median(r.rates) for r in results if r.name == PROCESS}
    for result in results:
        rate = statistics.median(result.rates)
        versus = process_rates.get(result.workers) if result.name != PROCESS else None
        lines.append(
            f"| {result.name} | {result.workers if result.name != 'local' else '-'} "
            f"| {result.cores} | {rate:,.0f} | {min(result.rates):,.0f}-{max(result.rates):,.0f} "
            f"| {rate / (mj_limit * result.cores):.2f} | {rate / env_limits[result.cores]:.2f} "
            f"| {f'{rate / versus:.2f}' if versus else '-'} "
            f"| {statistics.median(result.policy_shares):.0%} |"
        )
    two = {r.name: statistics.median(r.rates) / (mj_limit * 2) for r in results if r.workers == 2}
    if PROCESS in two:
        verdict = "met" if two[PROCESS] >= 0.6 else "not met"
        lines += [
            "",
            f"Target (>= 0.6 of the mj_step limit x cores with 2 workers): {verdict} "
            f"({two[PROCESS]:.2f} for `--backend process`; "
            + ", ".join(f"{name}: {ratio:.2f}" for name, ratio in two.items() if name != PROCESS)
            + ").",
        ]
    lines += [
        "",
        f"`{PROCESS}`: `--backend process` with a CPU policy (`ProcessSliceSampler`: each "
        "worker runs whole episodes of a slice of the tasks, policy included). "
        f"`{PROCESS_DRIVER}`: `ProcessEnvSampler`, what `--backend process` builds for a GPU "
        "policy (workers hold the environments, the driver runs one batched forward pass per "
        "step while they wait). `cores`: workers. `vs mj_step limit x cores`: the target "
        "metric, steps/s over the physics limit times the cores. `vs bare env.step loops`: over "
        "the bare loops on as many cores, i.e. the sampler's own efficiency; the gap between the "
        "bare loops and the physics limit is the env's Python code and the cache misses of "
        "stepping many envs, which no sampler removes (the envs share one compiled model, as in "
        "training runs). `policy share`: time in the batched forward pass, noise, log-probs and "
        "clipping (with the policy in the workers: in the slowest worker, whose forward pass "
        "runs while the other workers step). Ray's rows are measured after the others, with "
        "its daemons running.",
        "",
    ]
    if adaptations:
        lines += [
            "## One iteration's rollouts: inner step on the driver or on the actors",
            "",
            "An adaptation round, one MAML inner step (policy gradient, linear baseline; CPU), "
            "and a validation round with the adapted parameters: "
            f"2 x {num_tasks * episodes * horizon:,} env steps, medians of {repeats}.",
            "",
            "| configuration | seconds (median) | range | vs process, inner step on the driver |",
            "|---|---|---|---|",
        ]
        base = statistics.median(adaptations[0].seconds)
        for adaptation in adaptations:
            seconds = statistics.median(adaptation.seconds)
            lines.append(
                f"| {adaptation.label} | {seconds:.2f} | {min(adaptation.seconds):.2f}-"
                f"{max(adaptation.seconds):.2f} | {seconds / base:.2f} |"
            )
        lines.append("")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
