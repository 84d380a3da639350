"""MAML, Reptile, LEO and the SB3 PPO baselines side by side on the same unseen tasks.

For each family and seed, every agent is trained with the budget below through `metarobot
train`, evaluated with `metarobot evaluate` on the same test tasks (fresh rollouts before every
adaptation step, the same rollouts per step for every agent), and pooled over seeds by
`metarobot report`. Writes `benchmarks/agents.md` with the budgets, seeds and commands, the
report table of every family that has run, the MAML paper's figures where the setting matches,
and each family's plot as `benchmarks/agents_<family>.png`. Families not run are listed as
pending with the command that runs them.

Runs live under `--out` (default `runs/bench/<family>/<agent>-seed<k>`); a finished run is
reused and an interrupted one resumed, so the script can be stopped, restarted and run one
family at a time. Not run in CI: the locomotion families take hours on a CPU.

Usage: ``python scripts/bench_agents.py --families PointNav2D --seeds 0 1 --jobs 2``
"""

from __future__ import annotations

import argparse
import csv
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from reproduce import PAPER_MAML_CHEETAH_VEL, PAPER_PRETRAINED_CHEETAH_VEL

from metarobot.report import AgentRow, comparison_table, load_evaluation, pool, write_report
from metarobot.run.checkpoints import list_checkpoints, load_checkpoint
from metarobot.run.config import load_config

AGENTS = ("maml", "reptile", "leo", "ppo-scratch", "ppo-multitask")
EVAL_SEED = 1000


@dataclass(frozen=True)
class Bench:
    """One family's budget: the run config shared by all agents, their settings, evaluation.

    Attributes:
        iterations: Meta-training iterations (``ppo-scratch`` takes none).
        meta_batch_size: Train tasks per iteration.
        episodes_per_task: Episodes per task and step, in training and in evaluation.
        agent_flags: Extra ``metarobot train`` flags per agent (``--set`` hyperparameters).
        tasks: Test tasks evaluated.
        adapt_steps: Adaptation steps evaluated (0..K).
        paper: The MAML paper's average return after 0..3 steps, per agent, where comparable.
        note: What the budget is and how it relates to the literature.
    """

    iterations: int
    meta_batch_size: int
    episodes_per_task: int
    agent_flags: dict[str, list[str]]
    tasks: int = 40
    adapt_steps: int = 3
    paper: dict[str, tuple[float, ...]] = field(default_factory=dict)
    note: str = ""

    def iterations_of(self, agent: str) -> int:
        """Meta-training iterations of ``agent``: none for PPO from scratch."""
        return 0 if agent == "ppo-scratch" else self.iterations


def agent_flags(iterations: int) -> dict[str, list[str]]:
    """Per-agent settings: the papers' defaults, except where a short CPU run needs larger steps.

    Reptile and LEO use the settings their learning tests were tuned with on PointNav2D; the
    multi-task PPO pretrains for MAML's env-step budget (one inner step), batching 8 envs.
    """
    return {
        "maml": [],
        "reptile": sets(num_inner_steps=3, inner_lr=0.01, anneal_updates=iterations),
        "leo": sets(latent_dim=8, outer_lr=0.003, inner_lr_init=10.0),
        "ppo-scratch": [],
        "ppo-multitask": sets(n_envs=8, n_steps=256, matched_inner_steps=1),
    }


def sets(**values: float) -> list[str]:
    """``--set key=value`` flags of ``metarobot train``."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def cpu_locomotion(note: str, paper: dict[str, tuple[float, ...]] | None = None) -> Bench:
    """What 2 CPU cores afford on a locomotion family: 30 iterations of 10 tasks x 10 episodes."""
    return Bench(
        iterations=30,
        meta_batch_size=10,
        episodes_per_task=10,
        agent_flags=agent_flags(30),
        tasks=20,
        paper=paper or {},
        note=note,
    )


BENCHES = {
    "PointNav2D": Bench(
        iterations=20,
        meta_batch_size=20,
        episodes_per_task=20,
        agent_flags=agent_flags(20),
        note=(
            "`ppo-multitask` learns one policy for all goals with no goal in its input; the best "
            "such policy heads for the middle, and pretraining shrinks its action std (table "
            "above) as it converges there. One PPO update, whose probability ratio is clipped "
            "at 0.2, can then move the mean action by only a fraction of that small std, so "
            "its fine-tuning barely moves. `ppo-scratch` starts at std 1: wandering reaches the "
            "0.1 success radius more often than the meta-policies that wait near the middle "
            "(its success at step 0), but it ends farther from the goal on average. The MAML "
            "paper reports 2D navigation only as a log-scale plot, in a setting that differs in "
            "details (velocity commands clipped to [-0.1, 0.1], episodes that end at the goal), "
            "so no paper numbers are set beside ours; its qualitative result, MAML adapting "
            "faster than the pretrained policy and than random initialization, is what to compare."
        ),
    ),
    "HalfCheetahVel": cpu_locomotion(
        paper={
            "MAML paper (Fig. 5)": PAPER_MAML_CHEETAH_VEL,
            "paper's pretrained (Fig. 5)": PAPER_PRETRAINED_CHEETAH_VEL,
        },
        note=(
            "A CPU budget: 1.2M meta-training env steps, where the paper's setting (meta-batch "
            "40 x 20 episodes) takes 320,000 per iteration for hundreds of iterations; "
            "[paper_results.md](paper_results.md) (`python "
            "scripts/reproduce.py`) runs that setting. At this budget no agent has learned "
            "to adapt: every curve is flat within its CIs. The levels at step 0 follow how much "
            "each initial policy still explores, since the control cost grows with the action "
            "noise: `ppo-multitask`, whose pretraining shrank its std to about 0.2, pays the "
            "least. The paper's values are read off its Fig. 5, so approximate."
        ),
    ),
    "AntDir": cpu_locomotion(
        note=(
            "A CPU budget, as for HalfCheetahVel, and the same reading: no agent adapts yet "
            "(MAML's gain after step 0 is about one CI; Reptile and LEO lose return). The "
            "reward adds a healthy bonus per step and subtracts control and contact costs, so "
            "at this budget the level is set by how calmly a policy moves: `ppo-multitask` "
            "(action std about 0.14 after pretraining) stays upright at little cost, the "
            "meta-learners (std near 1) pay for their exploration. The MAML paper's ant task is "
            "forward/backward (two directions); AntDir draws any direction in the plane (as in "
            "later work, e.g. ProMP), so there is no paper figure to set beside ours."
        ),
    ),
}


def run_dir(out: Path, family: str, agent: str, seed: int) -> Path:
    """Where one agent's run of one seed lives."""
    return out / family / f"{agent}-seed{seed}"


def train_command(bench: Bench, family: str, agent: str, seed: int, out: Path) -> list[str]:
    """The ``metarobot train`` command of one run (a resume if it already started)."""
    path = run_dir(out, family, agent, seed)
    iterations = str(bench.iterations_of(agent))
    if (path / "config.toml").exists():
        return [
            "metarobot", "train", "--out", str(path), "--resume", "--iterations", iterations,
            "--no-progress",
        ]  # fmt: skip
    return [
        "metarobot", "train", "--family", family, "--agent", agent, "--seed", str(seed),
        "--iterations", iterations, "--meta-batch-size", str(bench.meta_batch_size),
        "--episodes-per-task", str(bench.episodes_per_task), "--device", "cpu",
        "--checkpoint-every", "5", "--out", str(path), "--no-progress",
        *bench.agent_flags[agent],
    ]  # fmt: skip


def evaluate_command(bench: Bench, path: Path) -> list[str]:
    """The ``metarobot evaluate`` command: the same tasks, steps and rollouts for every agent."""
    return [
        "metarobot", "evaluate", str(path), "--tasks", str(bench.tasks),
        "--adapt-steps", str(bench.adapt_steps), "--rollouts", str(bench.episodes_per_task),
        "--seed", str(EVAL_SEED), "--device", "cpu",
    ]  # fmt: skip


def finished(path: Path, iterations: int) -> bool:
    """Whether a run reached its last iteration (its latest checkpoint is that iteration)."""
    found = list_checkpoints(path / "checkpoints")
    return bool(found) and max(found) >= iterations


def evaluated(path: Path) -> bool:
    """Whether the run's latest checkpoint has an evaluation of the test split."""
    found = list_checkpoints(path / "checkpoints")
    return bool(found) and (path / "eval" / f"test_iter{max(found):06d}.json").exists()


def execute(command: Sequence[str], log: Path) -> None:
    """Run one CLI command from this interpreter's environment, appending its output to ``log``."""
    binary = Path(sys.executable).parent / command[0]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        subprocess.run([str(binary), *command[1:]], stdout=handle, stderr=handle, check=True)


def train_and_evaluate(bench: Bench, family: str, agent: str, seed: int, out: Path) -> None:
    """Train (or finish) one run, then evaluate its last checkpoint unless that is done."""
    path = run_dir(out, family, agent, seed)
    log = out / family / "logs" / f"{agent}-seed{seed}.log"
    if not finished(path, bench.iterations_of(agent)):
        execute(train_command(bench, family, agent, seed, out), log)
    if not evaluated(path):
        execute(evaluate_command(bench, path), log)
    print(f"done: {family} {agent} seed {seed}", flush=True)


def training_cost(path: Path) -> tuple[int, float]:
    """Env steps an agent learned from in meta-training, and the loop's compute time (s).

    From ``metrics.csv``: a meta-learner samples ``K + 1`` rounds (``adapt/step_<k>``) of
    ``N x E`` episodes per iteration and learns from all; multi-task PPO learns only from its
    own pretraining steps (the loop's rollouts measure it).
    """
    config, _ = load_config(path / "config.toml")
    if not (path / "metrics.csv").exists():
        return 0, 0.0
    with open(path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return 0, 0.0
    seconds = sum(float(r["time/sampling"]) + float(r["time/update"]) for r in rows)
    if "pretrain/env_steps" in rows[-1]:
        return int(float(rows[-1]["pretrain/env_steps"])), seconds
    rounds = sum(1 for key in rows[0] if key.startswith("adapt/step_") and key.endswith("return"))
    per_round = config.meta_batch_size * config.episodes_per_task * config.horizon
    return len(rows) * rounds * per_round, seconds


def action_std(path: Path) -> float:
    """Mean action standard deviation of the run's meta-policy at its latest checkpoint.

    It says how much a policy still explores when adaptation starts: every update learns from
    rollouts of that policy.
    """
    found = list_checkpoints(path / "checkpoints")
    state = load_checkpoint(found[max(found)])
    return float(state["agent"]["policy"]["log_std"].exp().mean())


def budget_table(rows: Sequence[AgentRow]) -> list[str]:
    """Per agent: meta-training env steps and time, action std (means over runs), settings."""
    lines = [
        "| agent | seeds | iterations | meta-training env steps learned from "
        "| training time per run | action std at step 0 "
        "| `metarobot train` settings beyond the shared flags |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        costs = [training_cost(run.run_dir) for run in row.runs]
        steps = sum(c[0] for c in costs) / len(costs)
        minutes = sum(c[1] for c in costs) / len(costs) / 60
        seeds = ", ".join(str(run.config.seed) for run in row.runs)
        std = sum(action_std(run.run_dir) for run in row.runs) / len(row.runs)
        config = row.runs[0].config
        flags = " ".join(BENCHES[config.family].agent_flags[config.agent])
        lines.append(
            f"| {row.label} | {seeds} | {config.iterations} | {steps:,.0f} | {minutes:.1f} min "
            f"| {std:.2f} | {f'`{flags}`' if flags else '-'} |"
        )
    return lines


def paper_table(bench: Bench, rows: Sequence[AgentRow]) -> list[str]:
    """The paper's returns beside ours (mean over tasks and seeds), where the setting matches."""
    if not bench.paper:
        return []
    steps = range(min(bench.adapt_steps, 3) + 1)
    lines = [
        "",
        "Beside the MAML paper (average return; ours without CIs, see above):",
        "",
        "| | " + " | ".join(f"{k} step{'s' * (k != 1)}" for k in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    for label, values in bench.paper.items():
        lines.append(f"| {label} | " + " | ".join(f"~{values[k]:.0f}" for k in steps) + " |")
    for row in rows:
        summary = row.summary()
        cells = " | ".join(f"{summary[k]['return_mean']:.1f}" for k in steps)
        lines.append(f"| ours: {row.label} | {cells} |")
    return lines


def family_section(family: str, bench: Bench, out: Path) -> list[str]:
    """One family's Markdown from its evaluated runs (any seeds): setting, budgets, tables, plot.

    A family with an agent that has no evaluated run yet is listed as pending, with its command.
    """
    paths = [
        path
        for agent in AGENTS
        for path in sorted((out / family).glob(f"{agent}-seed*"))
        if evaluated(path)
    ]
    header = [f"## {family}", ""]
    missing = [a for a in AGENTS if not any(p.name.startswith(f"{a}-seed") for p in paths)]
    if missing:
        command = f"python scripts/bench_agents.py --families {family} --seeds 0 1 --jobs 2"
        return [
            *header,
            f"Pending: not run here yet ({', '.join(missing)} missing). Command: `{command}`",
            "",
            bench.note,
            "",
        ]
    rows = pool([load_evaluation(path) for path in paths])
    report_dir = out / family / "report"
    _, png = write_report(rows, report_dir)
    plot = Path("benchmarks") / f"agents_{family}.png"
    shutil.copyfile(png, plot)
    shared = (
        f"`--family {family} --iterations {bench.iterations} --meta-batch-size "
        f"{bench.meta_batch_size} --episodes-per-task {bench.episodes_per_task}`"
    )
    lines = [
        *header,
        f"Shared training flags: {shared} (family horizon and default policy sizes). "
        f"Evaluation: `metarobot evaluate RUN --tasks {bench.tasks} --adapt-steps "
        f"{bench.adapt_steps} --rollouts {bench.episodes_per_task} --seed {EVAL_SEED}` on every "
        f"run, then `metarobot report` over all of them.",
        "",
        *budget_table(rows),
        "",
        "Return after k adaptation steps (mean ± 95% CI over tasks x seeds):",
        "",
        comparison_table(rows, "return"),
    ]
    if any(row.pooled.success.any() for row in rows):
        lines += ["", "Success rate:", "", comparison_table(rows, "success")]
    lines += paper_table(bench, rows)
    lines += ["", f"![{family}: adaptation curves per agent](agents_{family}.png)", ""]
    return [*lines, bench.note, ""]


def write_benchmark(path: Path, out: Path) -> None:
    """Write ``benchmarks/agents.md`` from whatever runs are complete."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Agents side by side: meta-learners and PPO baselines",
        "",
        f"Written by `python scripts/bench_agents.py` ({stamp} UTC, {platform.machine()}, "
        "CPU only, `torch.set_num_threads(1)`, two runs at a time on a 2-core machine shared "
        "with other jobs, so times are indicative); each family's seeds are in its budget table.",
        "",
        "Protocol (`metarobot evaluate`, the MAML paper's): on unseen test tasks, sample "
        "`R` fresh rollouts with the current parameters before each adaptation step and adapt "
        "on them; step `k` reports the rollouts after `k` updates. Every agent gets the same "
        "`R x horizon` env steps per task and step. MAML: one policy-gradient step; Reptile and "
        "LEO: their inner loop on the step's rollouts; `ppo-scratch` and `ppo-multitask`: one "
        "SB3 PPO update (10 epochs of minibatches of 64) on those rollouts, with each task's "
        "critic and Adam state kept across its steps. `ppo-scratch` starts from the same "
        "initial weights as every meta-learner's checkpoint 0 and is not meta-trained; "
        "`ppo-multitask` is pretrained with SB3 PPO on environments that draw a new train task "
        "at every reset, for MAML's meta-training env-step budget, then fine-tuned the same "
        "way. Baselines' numbers are what they get from that budget, not tuned PPO results.",
        "",
    ]
    for family, bench in BENCHES.items():
        lines += family_section(family, bench, out)
    lines += [
        "## Manipulation",
        "",
        "MAML on the `Reach` family, against the same adaptation from its untrained policy: "
        "[agents_reach.md](agents_reach.md).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=sorted(BENCHES), default=[])
    parser.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--report", type=Path, default=Path("benchmarks/agents.md"))
    args = parser.parse_args()

    work = [
        (BENCHES[family], family, agent, seed)
        for family in args.families
        for agent in args.agents
        for seed in args.seeds
    ]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool_:
        for future in [pool_.submit(train_and_evaluate, *item, args.out) for item in work]:
            future.result()
    write_benchmark(args.report, args.out)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
