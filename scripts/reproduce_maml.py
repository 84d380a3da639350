"""MAML on HalfCheetahVel in the MAML paper's setting, evaluated beside the paper's curve.

Setting (Finn et al. 2017, Sec. 5.3 and App. A.2): 2 x 100 tanh policy, one inner
policy-gradient step with learning rate 0.1, meta-batch of 40 tasks, 20 episodes per task,
horizon 200, TRPO outer loop (KL 0.01). Evaluation: 40 unseen test velocities, 0..3 adaptation
steps of 20 fresh episodes each. Results are written to ``benchmarks/maml_halfcheetah_vel.md``.

The paper trained for hundreds of iterations; ``--iterations`` sets how many this run takes, and
the output says how many it did. Not run in CI.

Usage: ``python scripts/reproduce_maml.py --iterations 500 --workers 2 --out runs/maml-cheetah``
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
from datetime import date
from pathlib import Path

from metarobot.config import RunConfig
from metarobot.evaluation import evaluate_adaptation, write_results
from metarobot.runs import load_run
from metarobot.training import train

# Read off Fig. 5 of the MAML paper (half-cheetah, goal velocity), so approximate: average
# return after 0, 1, 2, 3 gradient steps.
PAPER_MAML = (-130.0, -75.0, -70.0, -65.0)
PAPER_PRETRAINED = (-155.0, -135.0, -130.0, -130.0)


def training_progress(metrics: Path, every: int = 10) -> list[str]:
    """The run's learning curve and cost, from its ``metrics.csv``.

    Train-task returns before and after the inner step every ``every`` iterations, and the
    median wall time of an iteration's sampling and update.
    """
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    sampling = statistics.median(float(r["time/sampling"]) for r in rows)
    update = statistics.median(float(r["time/update"]) for r in rows)
    lines = [
        f"Meta-training on train velocities ({len(rows)} iterations; median seconds per "
        f"iteration on this machine: {sampling:.1f} sampling, {update:.1f} TRPO update). Mean "
        "return of the meta-batch before and after its inner step:",
        "",
        "| iteration | before adaptation | after one step |",
        "|---:|---:|---:|",
    ]
    for number, row in enumerate(rows, start=1):
        if number == 1 or number % every == 0:
            before, after = (float(row[f"adapt/step_{k}/return"]) for k in (0, 1))
            lines.append(f"| {number} | {before:.1f} | {after:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/maml-halfcheetah-vel"))
    parser.add_argument("--report", type=Path, default=Path("benchmarks/maml_halfcheetah_vel.md"))
    args = parser.parse_args()

    config = RunConfig(
        family="HalfCheetahVel",
        agent="maml",
        iterations=args.iterations,
        meta_batch_size=40,
        episodes_per_task=20,
        hidden_sizes=(100, 100),
        backend="process" if args.workers > 1 else "local",
        workers=args.workers,
        device=args.device,
        checkpoint_every=10,
    )
    resume = (args.out / "config.toml").exists()
    train(config, args.out, resume=resume).close()

    rows = []
    for checkpoint in (0, None):
        parts, iteration = load_run(args.out, checkpoint=checkpoint)
        tasks = parts.family.sample_tasks(40, "test", seed=1000)
        try:
            result = evaluate_adaptation(
                parts.agent, parts.sampler, tasks, 3, 20, seed=1000, label=f"iteration {iteration}"
            )
        finally:
            parts.close()
        write_results(result, args.out / "eval", f"test_iter{iteration:06d}")
        rows.append(result)

    lines = [
        "# MAML on HalfCheetahVel (paper setting)",
        "",
        f"`python scripts/reproduce_maml.py --iterations {args.iterations}` on {date.today()}: "
        f"meta-batch 40, 20 episodes per task, horizon 200, {rows[-1].label}. Mean return over "
        "40 unseen test velocities (± 95% CI); the paper's values are read off its Fig. 5.",
        "",
        "| adaptation steps | untrained (iteration 0) | ours, meta-trained | MAML paper "
        "| paper's pretrained baseline |",
        "|---:|---:|---:|---:|---:|",
    ]
    untrained, trained = (r.summary() for r in rows)
    for step in range(4):
        ours = [
            f"{s[step]['return_mean']:.1f} ± {s[step]['return_ci95']:.1f}"
            for s in (untrained, trained)
        ]
        lines.append(
            f"| {step} | {ours[0]} | {ours[1]} "
            f"| ≈{PAPER_MAML[step]:.0f} | ≈{PAPER_PRETRAINED[step]:.0f} |"
        )
    plot = args.report.with_suffix(".png")
    plot.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / "eval" / f"test_iter{iteration:06d}.png", plot)
    lines += ["", f"![adaptation curve of the meta-trained policy]({plot.name})", ""]
    lines += [*training_progress(args.out / "metrics.csv")]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
