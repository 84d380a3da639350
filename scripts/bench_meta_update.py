"""Benchmark MAML's TRPO meta-update on the MAML paper's HalfCheetahVel batch.

The batch is the paper's (Finn et al. 2017): 40 tasks x 20 episodes x 200 steps for the inner
step and as many for validation, a 2 x 100 tanh policy, one inner step, TRPO with 10 conjugate
gradient iterations. Each repeat samples a fresh batch (``--backend process`` on every core, as
training does), then runs every configuration on it from the same parameters, interleaved, so
that other load on the machine hits them alike; medians over repeats are reported.

The reference is the textbook update, written out below: the surrogate and the KL built once
through the second-order inner step, Hessian-vector products by double backpropagation through
that whole graph, every core. The rows then take the agent's options one at a time: the
Hessian-vector product as ``J^T F J`` by reverse passes through the inner step, task chunks that
keep activations in cache, and the Fisher estimated on every k-th task. Each row says how far its
update lands from the reference's (relative distance of the parameter step; cosine of the steps).

A whole training iteration is timed too: the batch's sampling plus the default update.

Usage::

    python scripts/bench_meta_update.py             # 3 repeats (about 10 minutes on 2 cores)
    python scripts/bench_meta_update.py --quick     # 8 tasks x 5 episodes, a smoke test

Writes ``benchmarks/meta_update.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from bench_sampler import cpu_pressure, machine_info
from torch.distributions import Normal, kl_divergence

from agents.common import learning_episodes, policy_gradient_loss
from agents.maml import MAML, MAMLConfig
from metarobot.agent import MetaBatch
from metarobot.optim import (
    backtracking_line_search,
    conjugate_gradient,
    flatten_params,
    hessian_vector_product,
    unflatten_params,
)
from metarobot.policies import expand_params
from metarobot.returns import compute_advantages, task_mean
from metarobot.run.build import RunParts, build
from metarobot.run.config import RunConfig
from metarobot.run.training import collect_meta_batch
from metarobot.seeding import derive_seed
from metarobot.threads import available_cores, torch_threads


def reference_update(agent: MAML, batch: MetaBatch) -> None:
    """The plain exact TRPO meta-update: one graph, double-backward products, no chunks."""
    config, policy = agent.config, agent.policy
    train = [learning_episodes(e, agent.device) for e in batch.train]
    valid = learning_episodes(batch.valid, agent.device)
    train_advantages = [compute_advantages(e, config.gamma, config.gae_lambda) for e in train]
    valid_advantages = compute_advantages(valid, config.gamma, config.gae_lambda)
    meta = policy.meta_parameters()

    def adapted_policy(start: dict[str, torch.Tensor], create_graph: bool) -> Normal:
        params = expand_params(start, valid.num_tasks)
        for episodes, advantages in zip(train, train_advantages, strict=True):
            distribution = policy.batched_distribution(episodes.observations, params)
            loss = policy_gradient_loss(distribution, episodes, advantages).sum()
            grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=create_graph)
            params = {
                name: p - config.inner_lr * g
                for (name, p), g in zip(params.items(), grads, strict=True)
            }
        return policy.batched_distribution(valid.observations, params)

    def surrogate_and_kl(new: Normal, old: Normal) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = (new.log_prob(valid.actions) - old.log_prob(valid.actions)).sum(-1).exp()
        loss = -task_mean(ratio * valid_advantages, valid.masks).mean()
        kl = task_mean(kl_divergence(old, new).sum(-1), valid.masks).mean()
        return loss, kl

    with torch.enable_grad():
        new = adapted_policy(meta, create_graph=True)
        old = Normal(new.loc.detach(), new.scale.detach())
        loss, kl = surrogate_and_kl(new, old)
        grads = torch.autograd.grad(loss, tuple(meta.values()), retain_graph=True)
        grad = torch.cat([g.reshape(-1) for g in grads])
        hvp = hessian_vector_product(kl, tuple(meta.values()), damping=config.cg_damping)
        direction = conjugate_gradient(hvp, grad, iterations=config.cg_iters)
        step = direction * torch.sqrt(2 * config.max_kl / (direction @ hvp(direction)))

        def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
            start = {
                name: p.detach().requires_grad_()
                for name, p in unflatten_params(candidate, meta).items()
            }
            candidate_loss, candidate_kl = surrogate_and_kl(adapted_policy(start, False), old)
            return candidate_loss.item(), candidate_kl.item()

        result = backtracking_line_search(
            evaluate,
            flatten_params(meta).detach(),
            -step,
            loss.item(),
            config.max_kl,
            config.ls_max_steps,
            config.ls_backtrack_ratio,
        )
    with torch.no_grad():
        for name, value in unflatten_params(result.params, meta).items():
            meta[name].copy_(value)


@dataclass(frozen=True)
class Variant:
    """One row: a meta-update and the CPU threads it runs with."""

    label: str
    threads: int
    maml: MAMLConfig | None = None
    """The agent's config; ``None`` runs :func:`reference_update`."""
    device: str = "cpu"


@dataclass
class Outcome:
    """A row's measurements, one entry per batch."""

    seconds: list[float]
    distance: list[float]
    cosine: list[float]


def run_variant(variant: Variant, agent: MAML, batch: MetaBatch) -> tuple[float, torch.Tensor]:
    """Seconds of one update from ``agent``'s parameters, and the parameters after it."""
    agent = MAML(copy.deepcopy(agent.policy), agent.config, variant.device)
    update: Callable[[], object]
    if variant.maml is None:
        update = lambda: reference_update(agent, batch)  # noqa: E731
    else:
        agent.config = variant.maml
        update = lambda: agent.meta_update(batch)  # noqa: E731
    with torch_threads(variant.threads):
        started = time.perf_counter()
        update()
        seconds = time.perf_counter() - started
    return seconds, flatten_params(agent.policy.meta_parameters()).detach()


REFERENCE = "reference: double backprop, one graph, every core"
DEFAULT = "default MAMLConfig(), every core"


def variants(cores: int, fisher_tasks: int, cuda: bool) -> list[Variant]:
    default = MAMLConfig()
    exact_whole = replace(default, fisher_tasks=0, chunk_tasks=10_000)
    rows = [
        Variant("reference: double backprop, one graph, 1 thread (training before)", 1),
        Variant(REFERENCE, cores),
        Variant("J^T F J products, whole batch, 1 thread", 1, exact_whole),
        Variant(f"J^T F J products, whole batch, {cores} threads", cores, exact_whole),
        Variant(
            f"J^T F J products, chunks of 4 tasks, {cores} threads (exact)",
            cores,
            replace(exact_whole, chunk_tasks=4),
        ),
        Variant(
            f"J^T F J products, whole batch, Fisher on {fisher_tasks} evenly spaced tasks",
            cores,
            replace(exact_whole, fisher_tasks=fisher_tasks),
        ),
        Variant(DEFAULT, cores, default),
    ]
    if cuda:
        rows.append(Variant("default MAMLConfig() on CUDA", cores, default, "cuda"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="batches (updates per row)")
    parser.add_argument("--quick", action="store_true", help="8 tasks x 5 episodes, 1 repeat")
    parser.add_argument(
        "--fisher-tasks", type=int, default=8, help="tasks of the subsampling row's Fisher"
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/meta_update.md"))
    args = parser.parse_args()
    tasks, episodes = (8, 5) if args.quick else (40, 20)
    repeats = 1 if args.quick else args.repeats
    cores = available_cores()
    cuda = torch.cuda.is_available()
    config = RunConfig(
        family="HalfCheetahVel",
        agent="maml",
        meta_batch_size=tasks,
        episodes_per_task=episodes,
        hidden_sizes=(100, 100),
        device="cpu",
        backend="process",
        workers=cores,
    )
    rows = variants(cores, args.fisher_tasks, cuda)
    outcomes = {row.label: Outcome([], [], []) for row in rows}
    sampling: list[float] = []
    parts: RunParts = build(config)
    try:
        agent = parts.agent
        assert isinstance(agent, MAML)
        for repeat in range(repeats):
            seed = derive_seed(config.seed, repeat)
            started = time.perf_counter()
            batch = collect_meta_batch(parts, parts.family.sample_tasks(tasks, "train", seed), seed)
            sampling.append(time.perf_counter() - started)
            before = flatten_params(agent.policy.meta_parameters()).detach().clone()
            steps = {}
            for row in rows:
                seconds, after = run_variant(row, agent, batch)
                steps[row.label] = after.cpu() - before
                outcomes[row.label].seconds.append(seconds)
                print(f"repeat {repeat}: {row.label}: {seconds:.2f} s", flush=True)
            for label, step in steps.items():
                reference_step = steps[REFERENCE]
                distance = (step - reference_step).norm() / reference_step.norm()
                cosine = torch.nn.functional.cosine_similarity(step, reference_step, dim=0)
                outcomes[label].distance.append(distance.item())
                outcomes[label].cosine.append(cosine.item())
    finally:
        parts.close()
    write_report(args, rows, outcomes, sampling, tasks, episodes, cores)


def write_report(
    args: argparse.Namespace,
    rows: list[Variant],
    outcomes: dict[str, Outcome],
    sampling: list[float],
    tasks: int,
    episodes: int,
    cores: int,
) -> None:
    reference = statistics.median(outcomes[REFERENCE].seconds)
    lines = [
        "# MAML's TRPO meta-update",
        "",
        f"`python scripts/bench_meta_update.py{' --quick' if args.quick else ''}`: one "
        f"meta-update on HalfCheetahVel, {cores} cores, {tasks} tasks x {episodes} episodes x "
        "200 steps (inner step and validation), 2 x 100 policy; median of "
        f"{len(sampling)} batches, every row on the same batches from the same parameters, "
        "interleaved. *vs reference*: time over the "
        "reference's in the same run. *step distance*: `|step - reference step| / "
        "|reference step|` of the meta-parameters (about 1e-6 for the exact rows: float "
        "rounding only). Whether the default still reproduces the paper is measured by "
        "training with it: [paper_results.md](paper_results.md).",
        "",
        "| meta-update | seconds (median) | vs reference | step distance | step cosine |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        outcome = outcomes[row.label]
        seconds = statistics.median(outcome.seconds)
        distance = statistics.median(outcome.distance)
        cosine = statistics.median(outcome.cosine)
        lines.append(
            f"| {row.label} | {seconds:.2f} | {seconds / reference:.3f} | {distance:.1e} "
            f"| {cosine:.4f} |"
        )
    default = statistics.median(outcomes[DEFAULT].seconds)
    sample = statistics.median(sampling)
    lines += [
        "",
        f"A whole iteration with the default update: {sample:.1f} s of sampling (`--backend "
        f"process`, {cores} workers) + {default:.1f} s of update = **{sample + default:.1f} s** "
        "(medians).",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine_info()),
        (f"| CPU pressure from other load (PSI some avg60, at the end) | {cpu_pressure()} |"),
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
