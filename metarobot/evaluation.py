"""The adaptation protocol on unseen tasks: return and success after 0, 1, ..., K steps.

As in the MAML paper's evaluation, each adaptation step gets fresh rollouts sampled with the
current parameters; the return reported for step ``k`` is that of the rollouts taken after ``k``
updates. Results are averaged per task over its rollouts, then summarized over tasks with a 95%
confidence interval (normal approximation, ``1.96 * std / sqrt(n)``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.base import Agent
from metarobot.policies import Params, expand_params
from metarobot.runs import derive_seed
from metarobot.sampling import Sampler
from metarobot.tasks import Task

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class AdaptationResult:
    """Per-task outcomes after each number of adaptation steps.

    Attributes:
        tasks: The evaluated tasks.
        returns: ``[K + 1, N]`` mean episode return of task ``n`` after ``k`` steps.
        success: ``[K + 1, N]`` fraction of successful episodes.
        rollouts: Episodes per task and step.
        label: What was evaluated (run and checkpoint), for tables and plots.
    """

    tasks: list[Task]
    returns: np.ndarray
    success: np.ndarray
    rollouts: int
    label: str

    def summary(self) -> list[dict[str, float]]:
        """One row per step: mean and 95% CI half-width of return and success over tasks."""
        rows = []
        for step in range(self.returns.shape[0]):
            ret_mean, ret_ci = mean_ci(self.returns[step])
            suc_mean, suc_ci = mean_ci(self.success[step])
            rows.append(
                {
                    "step": step,
                    "return_mean": ret_mean,
                    "return_ci95": ret_ci,
                    "success_mean": suc_mean,
                    "success_ci95": suc_ci,
                }
            )
        return rows

    def table(self) -> str:
        """The summary as a Markdown table."""
        lines = [
            f"Adaptation on {len(self.tasks)} {self.tasks[0].split} tasks of "
            f"{self.tasks[0].family} ({self.label}, {self.rollouts} rollouts per step)",
            "",
            "| adaptation steps | return (mean ± 95% CI) | success (mean ± 95% CI) |",
            "|---:|---:|---:|",
        ]
        for row in self.summary():
            lines.append(
                f"| {row['step']} | {row['return_mean']:.2f} ± {row['return_ci95']:.2f} "
                f"| {row['success_mean']:.2f} ± {row['success_ci95']:.2f} |"
            )
        return "\n".join(lines)


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width (normal approximation) of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), Z_95 * float(values.std(ddof=1)) / math.sqrt(values.size)


def evaluate_adaptation(
    agent: Agent,
    sampler: Sampler,
    tasks: list[Task],
    adapt_steps: int,
    rollouts: int,
    seed: int,
    label: str = "",
) -> AdaptationResult:
    """Adapt to each task for ``adapt_steps`` steps, measuring fresh rollouts before each step."""
    if adapt_steps < 0 or rollouts < 1 or not tasks:
        raise ValueError(
            f"need adapt_steps >= 0, rollouts >= 1 and tasks; got {adapt_steps}, {rollouts}, "
            f"{len(tasks)} tasks"
        )
    params: Params = expand_params(
        {k: v.detach() for k, v in agent.policy.meta_parameters().items()}, len(tasks)
    )
    returns, success = [], []
    for step in range(adapt_steps + 1):
        episodes = sampler.sample(tasks, params, rollouts, seed=derive_seed(seed, step))
        returns.append(episodes.episode_returns().mean(dim=1).cpu().numpy())
        success.append(episodes.episode_success().float().mean(dim=1).cpu().numpy())
        if step < adapt_steps:
            params = agent.adapt(episodes, params)
    return AdaptationResult(tasks, np.array(returns), np.array(success), rollouts, label)


def write_results(result: AdaptationResult, out_dir: Path, stem: str = "adaptation") -> list[Path]:
    """Write JSON (per task and summary), CSV (summary) and a PNG adaptation curve."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("json", "csv", "png"))
    json_path.write_text(
        json.dumps(
            {
                "label": result.label,
                "rollouts": result.rollouts,
                "summary": result.summary(),
                "tasks": [task.to_dict() for task in result.tasks],
                "returns": result.returns.tolist(),
                "success": result.success.tolist(),
            },
            indent=2,
        )
    )
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result.summary()[0]))
        writer.writeheader()
        writer.writerows(result.summary())
    plot_adaptation([result], png_path)
    return [json_path, csv_path, png_path]


def plot_adaptation(results: list[AdaptationResult], path: Path) -> None:
    """Return (and success, where any) against adaptation steps, with 95% CI bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_success = any(r.success.any() for r in results)
    fig, axes = plt.subplots(1, 2 if has_success else 1, figsize=(9 if has_success else 5, 3.6))
    axes = np.atleast_1d(axes)
    for result in results:
        rows = result.summary()
        steps = [r["step"] for r in rows]
        for ax, key in zip(axes, ("return", "success"), strict=False):
            mean = np.array([r[f"{key}_mean"] for r in rows])
            ci = np.nan_to_num(np.array([r[f"{key}_ci95"] for r in rows]))
            ax.plot(steps, mean, marker="o", label=result.label or None)
            ax.fill_between(steps, mean - ci, mean + ci, alpha=0.2)
    task = results[0].tasks[0]
    axes[0].set_ylabel("mean episode return")
    axes[0].set_title(f"{task.family}: {len(results[0].tasks)} {task.split} tasks")
    if has_success:
        axes[1].set_ylabel("success rate")
        axes[1].set_ylim(-0.05, 1.05)
    for ax in axes:
        ax.set_xlabel("adaptation steps")
        ax.set_xticks(steps)
        ax.grid(alpha=0.3)
    if any(r.label for r in results):
        axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
