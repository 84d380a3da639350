"""The adaptation protocol on unseen tasks: return and success after 0, 1, ..., K steps.

As in the MAML paper's evaluation, each adaptation step gets fresh rollouts sampled with the
current parameters; the return reported for step ``k`` is that of the rollouts taken after ``k``
updates. Results are averaged per task over its rollouts, then summarized over tasks with a 95%
confidence interval (normal approximation, ``1.96 * std / sqrt(n)``).

:class:`Protocol` varies this: a different number of episodes measured after the last step,
another horizon, tasks sampled a batch at a time, and per-task groups (skills) summarized
apart. :data:`METAWORLD_PLUS` is Meta-World+'s meta-test protocol, as its reference code
(Farama's metaworld-algorithms, ``metaworld.evaluation.metalearning_evaluation``) runs it: on
the first 40 tasks of each held-out skill, one inner step on 10 episodes, then success (any
success within an episode) over 3 episodes of 500 steps; per skill, and averaged over skills.
Every result records the software versions it was measured with, since Meta-World+ found that
unstated changes between Meta-World versions made published figures incomparable.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import platform
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarobot.agent import Adaptation, Agent
from metarobot.episodes import Episodes
from metarobot.policies import detach_params, expand_params
from metarobot.sampling import Sampler
from metarobot.seeding import derive_seed
from metarobot.tasks import Task

Z_95 = 1.959963984540054
VERSIONED_PACKAGES = ("mujoco", "metaworld", "gymnasium", "torch")
"""Packages whose versions every evaluation records (those installed)."""


@dataclass(frozen=True)
class Protocol:
    """How adaptation is measured on a list of tasks.

    Attributes:
        adapt_steps: Inner-loop steps ``K``.
        rollouts: Episodes per task sampled before each step: what the step adapts on, and
            what the result reports for the steps before the last.
        final_rollouts: Episodes per task measured after the last step (default ``rollouts``).
        horizon: Episode length (default: the sampler's envs').
        batch_size: Tasks per sampler call (default: all at once). It bounds the environments
            a sampler holds, not the result: each batch is sampled at its position in the
            whole list, so its episodes are those of one call, and the inner loops of MAML and
            Reptile adapt each task alone, bit for bit.
        name: What to call the protocol in tables (empty: the MAML paper's).
    """

    adapt_steps: int
    rollouts: int
    final_rollouts: int | None = None
    horizon: int | None = None
    batch_size: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        optional = {"final_rollouts": self.final_rollouts, "horizon": self.horizon}
        counts = {"rollouts": self.rollouts, **optional, "batch_size": self.batch_size}
        problems = [
            f"{name} must be >= 1, got {value!r}"
            for name, value in counts.items()
            if value is not None and value < 1
        ]
        if self.adapt_steps < 0:
            problems.append(f"adapt_steps must be >= 0, got {self.adapt_steps!r}")
        if problems:
            raise ValueError(f"invalid evaluation protocol: {'; '.join(problems)}")

    def describe(self) -> str:
        """One line for tables: the episodes of each step and their length."""
        final = self.final_rollouts or self.rollouts
        text = f"{adaptation_steps(self.adapt_steps)} on {self.rollouts} episodes each, "
        text += f"{final} episodes measured after"
        if self.horizon is not None:
            text += f", {self.horizon} steps per episode"
        return f"{self.name} protocol: {text}" if self.name else text


METAWORLD_PLUS = Protocol(
    adapt_steps=1, rollouts=10, final_rollouts=3, horizon=500, batch_size=20, name="Meta-World+"
)
"""Meta-World+'s meta-test protocol; its tasks are the first :data:`METAWORLD_PLUS_TASKS` of
each held-out skill, 20 sampled at a time (its meta-batch size)."""
METAWORLD_PLUS_TASKS = 40
"""Tasks per skill in Meta-World+'s meta-test protocol."""


def adaptation_steps(count: int) -> str:
    """``"1 adaptation step"``, ``"3 adaptation steps"``."""
    return f"{count} adaptation step{'s' * (count != 1)}"


def software_versions() -> dict[str, str]:
    """The installed versions of :data:`VERSIONED_PACKAGES`, by package name."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``, else what ``platform`` knows).

    Results are bitwise reproducible only on the same CPU model: torch's and MuJoCo's floating
    point take other instruction paths on other CPUs, and rollouts diverge from the last bit on.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class AdaptationResult:
    """Per-task outcomes after each number of adaptation steps.

    Attributes:
        tasks: The evaluated tasks.
        returns: ``[K + 1, N]`` mean episode return of task ``n`` after ``k`` steps.
        success: ``[K + 1, N]`` fraction of successful episodes.
        rollouts: Episodes per task and step (before the last step, where a protocol differs).
        label: What was evaluated (run and checkpoint), for tables and plots.
        groups: Each task's group (its skill), to summarize apart; empty for none.
        versions: Software versions the result was measured with (see
            :func:`software_versions`).
        protocol: How it was measured (:meth:`Protocol.describe`); empty for the default.
        cpu: The CPU it was measured on (:func:`cpu_model`); empty where not recorded.
    """

    tasks: list[Task]
    returns: np.ndarray
    success: np.ndarray
    rollouts: int
    label: str
    groups: tuple[str, ...] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    protocol: str = ""
    cpu: str = ""

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

    def group_summary(self) -> list[dict[str, float | str]]:
        """Per group, after the last step: mean and 95% CI of success and return over its tasks.

        The last row, ``"mean"``, weighs every group alike (Meta-World+'s mean over skills), with
        the CI of that stratified mean, ``sqrt(sum of the groups' squared CIs) / groups``.
        """
        if not self.groups:
            return []
        rows: list[dict[str, float | str]] = []
        names = list(dict.fromkeys(self.groups))
        for name in names:
            members = np.array([group == name for group in self.groups])
            suc_mean, suc_ci = mean_ci(self.success[-1, members])
            ret_mean, ret_ci = mean_ci(self.returns[-1, members])
            rows.append(
                {
                    "group": name,
                    "tasks": float(members.sum()),
                    "success_mean": suc_mean,
                    "success_ci95": suc_ci,
                    "return_mean": ret_mean,
                    "return_ci95": ret_ci,
                }
            )
        mean: dict[str, float | str] = {"group": "mean", "tasks": float(len(self.tasks))}
        for key in ("success", "return"):
            means = np.array([row[f"{key}_mean"] for row in rows], dtype=np.float64)
            cis = np.array([row[f"{key}_ci95"] for row in rows], dtype=np.float64)
            mean[f"{key}_mean"] = float(means.mean())
            mean[f"{key}_ci95"] = float(np.sqrt(np.sum(cis**2)) / len(rows))
        return [*rows, mean]

    def table(self) -> str:
        """The summary as a Markdown table, then per group, then the software versions."""
        lines = [
            f"Adaptation on {len(self.tasks)} {self.tasks[0].split} tasks of "
            f"{self.tasks[0].family} ({self.label}, {self.rollouts} rollouts per step)",
            *([self.protocol] if self.protocol else []),
            "",
            "| adaptation steps | return (mean ± 95% CI) | success (mean ± 95% CI) |",
            "|---:|---:|---:|",
        ]
        for row in self.summary():
            lines.append(
                f"| {row['step']} | {row['return_mean']:.2f} ± {row['return_ci95']:.2f} "
                f"| {row['success_mean']:.2f} ± {row['success_ci95']:.2f} |"
            )
        groups = self.group_summary()
        if groups:
            lines += [
                "",
                f"After {adaptation_steps(self.returns.shape[0] - 1)}, per skill:",
                "",
                "| skill | tasks | success (mean ± 95% CI) | return (mean ± 95% CI) |",
                "|---|---:|---:|---:|",
            ]
            lines += [
                f"| {row['group']} | {row['tasks']:.0f} "
                f"| {row['success_mean']:.3f} ± {row['success_ci95']:.3f} "
                f"| {row['return_mean']:.2f} ± {row['return_ci95']:.2f} |"
                for row in groups
            ]
        if self.versions:
            software = ", ".join(f"{name} {version}" for name, version in self.versions.items())
            lines += ["", f"Software: {software}"]
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
    return evaluate_protocol(agent, sampler, tasks, Protocol(adapt_steps, rollouts), seed, label)


def evaluate_protocol(
    agent: Agent,
    sampler: Sampler,
    tasks: list[Task],
    protocol: Protocol,
    seed: int,
    label: str = "",
    groups: Sequence[str] = (),
) -> AdaptationResult:
    """Adapt to each task as ``protocol`` says, measuring fresh rollouts before each step.

    Args:
        agent: The meta-learner whose inner loop adapts.
        sampler: Samples the episodes.
        tasks: The tasks (unseen ones, for a test).
        protocol: Episodes per step, horizon and batch size.
        seed: Seed of the episodes of step ``k``: ``derive_seed(seed, k)``.
        label: What is evaluated, for tables.
        groups: Each task's group, summarized apart (:meth:`AdaptationResult.group_summary`).
    """
    if not tasks or (groups and len(groups) != len(tasks)):
        raise ValueError(
            f"need tasks, and one group per task if any; got {len(tasks)} tasks and "
            f"{len(groups)} groups"
        )
    steps = protocol.adapt_steps
    returns = np.empty((steps + 1, len(tasks)))
    success = np.empty((steps + 1, len(tasks)))
    for rows, step, episodes in adaptation_episodes(agent, sampler, tasks, protocol, seed):
        returns[step, rows] = episodes.episode_returns().mean(dim=1).cpu().numpy()
        success[step, rows] = episodes.episode_success().float().mean(dim=1).cpu().numpy()
    return AdaptationResult(
        tasks,
        returns,
        success,
        protocol.rollouts,
        label,
        groups=tuple(groups),
        versions=software_versions(),
        protocol="" if protocol == Protocol(steps, protocol.rollouts) else protocol.describe(),
        cpu=cpu_model(),
    )


def adaptation_episodes(
    agent: Agent, sampler: Sampler, tasks: list[Task], protocol: Protocol, seed: int
) -> Iterator[tuple[slice, int, Episodes]]:
    """The episodes :func:`evaluate_protocol` measures: ``(tasks' rows, step, episodes)``.

    Scripts that look at more than returns (how episodes end, where the robot goes) read these,
    so what they report is about the very episodes of ``metarobot evaluate``.
    """
    meta = detach_params(agent.policy.meta_parameters())
    steps, batch = protocol.adapt_steps, protocol.batch_size or len(tasks)
    final = protocol.final_rollouts or protocol.rollouts
    for first in range(0, len(tasks), batch):
        chunk = tasks[first : first + batch]
        adaptation: Adaptation[Any] = Adaptation(expand_params(meta, len(chunk)), None)
        for step in range(steps + 1):
            episodes = sampler.sample(
                chunk,
                adaptation.params,
                protocol.rollouts if step < steps else final,
                seed=derive_seed(seed, step),
                horizon=protocol.horizon,
                first_task=first,
            )
            yield slice(first, first + len(chunk)), step, episodes
            if step < steps:
                adaptation = agent.adapt(episodes, adaptation)


def write_results(result: AdaptationResult, out_dir: Path, stem: str = "adaptation") -> list[Path]:
    """Write JSON (per task and summary), CSV (summary) and a PNG adaptation curve."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("json", "csv", "png"))
    json_path.write_text(
        json.dumps(
            {
                "label": result.label,
                "rollouts": result.rollouts,
                "protocol": result.protocol,
                "versions": dict(result.versions),
                "cpu": result.cpu,
                "summary": result.summary(),
                "group_summary": result.group_summary(),
                "groups": list(result.groups),
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
