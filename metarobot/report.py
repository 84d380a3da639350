"""Compare agents on the same test tasks and budgets: one table and one plot from run evaluations.

Each run directory contributes the evaluation that ``metarobot evaluate`` wrote into its
``eval/`` folder (per-task returns and success after 0..K adaptation steps). Runs of the same
agent that differ only by seed (and by how they were executed) pool into one row: their per-task
values are put together and summarized as one sample, mean and 95% CI over the ``tasks x runs``
values, as :func:`metarobot.evaluation.mean_ci` does over tasks. A comparison means something
only on the same tasks with the same experience per step, so runs evaluated on different task
sets, splits, numbers of steps, rollouts, horizons, protocols or software versions are refused
rather than tabulated.

Evaluations under Meta-World+'s protocol (``metarobot evaluate --protocol metaworld``, files
``metaworld_<split>_iter<N>.json``) carry each task's skill: pooled rows keep them, and the report
adds the success per skill after adaptation and the mean over skills, Meta-World+'s headline
number, with the protocol and the software versions measured with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarobot.evaluation import AdaptationResult, adaptation_steps
from metarobot.run.config import RunConfig, load_config
from metarobot.tasks import Task

DEFAULT_PROTOCOL = "maml"
"""``metarobot evaluate``'s default protocol, the one whose files carry no prefix."""
EVAL_FILE = re.compile(
    r"(?:(?P<protocol>metaworld)_)?(?P<split>train|test)_iter(?P<iteration>\d+)\.json"
)
"""Names of the JSON files ``metarobot evaluate`` writes into a run's ``eval/`` folder (see
:func:`evaluation_stem`)."""
EXECUTION_FIELDS = (
    "seed",
    "device",
    "backend",
    "workers",
    "checkpoint_every",
    "keep_checkpoints",
    "keep_every",
    "update_threads",
)
"""Run config fields that do not change what an agent is: runs differing only here pool."""
MEDIA_SUFFIXES = (".mp4", ".gif", ".png")
"""Files of a run's ``videos/`` folder (what ``metarobot render`` writes) that the report links."""
REPORT_NAME = "report"
"""Stem of the Markdown and PNG files of a report."""


@dataclass(frozen=True)
class RunEvaluation:
    """One run's evaluation as read back from its JSON file.

    Attributes:
        run_dir: The run directory.
        path: The evaluation JSON.
        iteration: The evaluated checkpoint.
        config: The run's config (``config.toml``).
        agent_config: The run's ``[agent]`` table.
        result: Per-task returns and success after 0..K steps.
    """

    run_dir: Path
    path: Path
    iteration: int
    config: RunConfig
    agent_config: dict[str, Any]
    result: AdaptationResult

    @property
    def setting(self) -> dict[str, Any]:
        """What must be equal for runs to be compared: tasks and the experience per step."""
        tasks = self.result.tasks
        return {
            "family": tasks[0].family,
            "split": tasks[0].split,
            "tasks": len(tasks),
            "task set": task_set_id(tasks),
            "adaptation steps": self.result.returns.shape[0] - 1,
            "rollouts per step": self.result.rollouts,
            "horizon": self.config.horizon,
            "protocol": self.result.protocol or "MAML paper's",
            "versions": self.result.versions,
        }

    @property
    def variant(self) -> dict[str, Any]:
        """What makes the agent what it is; runs with equal variants pool into one row."""
        run = {k: v for k, v in asdict(self.config).items() if k not in EXECUTION_FIELDS}
        return {**run, **self.agent_config, "checkpoint": self.iteration}


@dataclass(frozen=True)
class AgentRow:
    """Runs of one agent variant, pooled.

    Attributes:
        label: The agent's name, with what tells it apart from other rows of the same agent.
        runs: The pooled runs (one per seed, usually).
        pooled: Their results side by side: ``[K + 1, runs x tasks]`` values, tasks repeated.
    """

    label: str
    runs: list[RunEvaluation]
    pooled: AdaptationResult

    def summary(self) -> list[dict[str, float]]:
        """Mean and 95% CI of return and success over tasks and runs, per adaptation step."""
        return self.pooled.summary()


def task_set_id(tasks: Sequence[Task]) -> str:
    """A short digest of a task list, to tell task sets apart in messages and reports."""
    text = json.dumps([task.to_dict() for task in tasks], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def evaluation_stem(
    split: str, iteration: int, protocol: str = DEFAULT_PROTOCOL, inner_lr: float | None = None
) -> str:
    """The file name, less its suffix, of an evaluation (what :data:`EVAL_FILE` matches).

    Protocols other than the default are prefixed, so a run keeps a latest evaluation of each;
    one with another step size than the trained one (``inner_lr``) is suffixed, so it sits
    beside, not over, the trained step size's (and reports, which compare runs as trained,
    skip it).
    """
    prefix = "" if protocol == DEFAULT_PROTOCOL else f"{protocol}_"
    suffix = "" if inner_lr is None else f"_inner_lr{inner_lr:g}"
    return f"{prefix}{split}_iter{iteration:06d}{suffix}"


def find_evaluation(path: Path, split: str = "test", protocol: str = DEFAULT_PROTOCOL) -> Path:
    """The evaluation JSON for ``path``: the file itself, or a run's latest of split, protocol.

    Raises:
        ValueError: ``path`` is neither an evaluation JSON nor a run with such an evaluation.
    """
    if path.is_file():
        return path
    found = {
        int(match["iteration"]): candidate
        for candidate in (path / "eval").glob("*.json")
        if (match := EVAL_FILE.fullmatch(candidate.name))
        and match["split"] == split
        and (match["protocol"] or DEFAULT_PROTOCOL) == protocol
    }
    if not found:
        raise ValueError(
            f"{path} has no evaluation of the {split} split under the {protocol} protocol in "
            f"{path / 'eval'}: run `metarobot evaluate {path} --split {split} --protocol "
            f"{protocol}` first, or pass --evaluate"
        )
    return found[max(found)]


def load_evaluation(
    path: Path, split: str = "test", protocol: str = DEFAULT_PROTOCOL
) -> RunEvaluation:
    """Read a run's evaluation (see :func:`find_evaluation`) and the run's config.

    An evaluation JSON given directly must lie in its run's ``eval/`` folder, where
    ``metarobot evaluate`` writes it, since its agent is known only from the run's config.
    """
    json_path = find_evaluation(path, split, protocol)
    match = EVAL_FILE.fullmatch(json_path.name)
    if match is None:
        raise ValueError(f"{json_path} is not named like an evaluation ({EVAL_FILE.pattern})")
    run_dir = json_path.parent.parent
    if not (run_dir / "config.toml").is_file():
        raise ValueError(
            f"{json_path} is not in a run's eval/ folder (no {run_dir / 'config.toml'}): pass "
            f"the run directory, or an evaluation JSON under RUN/eval/"
        )
    config, agent_config = load_config(run_dir / "config.toml")
    data = json.loads(json_path.read_text())
    result = AdaptationResult(
        tasks=[Task.from_dict(task) for task in data["tasks"]],
        returns=np.asarray(data["returns"], dtype=np.float64),
        success=np.asarray(data["success"], dtype=np.float64),
        rollouts=int(data["rollouts"]),
        label=str(data["label"]),
        # Evaluations written before skills and protocols were recorded have neither.
        groups=tuple(data.get("groups", ())),
        versions=dict(data.get("versions", {})),
        protocol=str(data.get("protocol", "")),
        cpu=str(data.get("cpu", "")),
    )
    return RunEvaluation(run_dir, json_path, int(match["iteration"]), config, agent_config, result)


def check_comparable(evaluations: Sequence[RunEvaluation]) -> None:
    """Refuse runs evaluated on different task sets or budgets, naming each run's setting.

    Raises:
        ValueError: No evaluations, or their :attr:`RunEvaluation.setting` differ.
    """
    if not evaluations:
        raise ValueError("no runs to compare")
    settings = [e.setting for e in evaluations]
    differing = [key for key in settings[0] if len({str(s[key]) for s in settings}) > 1]
    if differing:
        lines = [
            f"  {e.path}: " + ", ".join(f"{key} {e.setting[key]}" for key in differing)
            for e in evaluations
        ]
        hint = (
            "evaluate them alike, e.g. `metarobot report --evaluate --protocol P --tasks N "
            "--adapt-steps K --rollouts R --seed S RUN ...`"
        )
        if "horizon" in differing or "family" in differing:
            hint = "runs of different families or horizons cannot be compared"
        raise ValueError(
            f"cannot compare runs evaluated on different task sets or budgets "
            f"({', '.join(differing)} differ):\n" + "\n".join(lines) + f"\n{hint}"
        )


def pool(evaluations: Sequence[RunEvaluation]) -> list[AgentRow]:
    """Group runs by agent variant (in order of first appearance) and pool each group."""
    check_comparable(evaluations)
    groups: dict[str, list[RunEvaluation]] = {}
    for evaluation in evaluations:
        groups.setdefault(json.dumps(evaluation.variant, sort_keys=True), []).append(evaluation)
    rows = []
    for runs in groups.values():
        first = runs[0].result
        pooled = AdaptationResult(
            tasks=[task for run in runs for task in run.result.tasks],
            returns=np.concatenate([run.result.returns for run in runs], axis=1),
            success=np.concatenate([run.result.success for run in runs], axis=1),
            rollouts=first.rollouts,
            label=_label(runs[0], [group[0] for group in groups.values()]),
            groups=tuple(group for run in runs for group in run.result.groups),
            versions=first.versions,
            protocol=first.protocol,
        )
        rows.append(AgentRow(pooled.label, runs, pooled))
    return rows


def _label(run: RunEvaluation, representatives: Sequence[RunEvaluation]) -> str:
    """The agent's name, plus the fields where it differs from other rows of the same agent."""
    agent = run.config.agent
    same_agent = [r.variant for r in representatives if r.config.agent == agent]
    differing = [
        key
        for key in run.variant
        if len({json.dumps(variant.get(key)) for variant in same_agent}) > 1
    ]
    if not differing:
        return agent
    return f"{agent} ({', '.join(f'{key}={run.variant[key]}' for key in differing)})"


def comparison_table(rows: Sequence[AgentRow], metric: str) -> str:
    """A Markdown table: one row per agent, ``metric`` (return or success) after each step."""
    steps = range(rows[0].pooled.returns.shape[0])
    lines = [
        "| agent | runs | " + " | ".join(f"{k} step{'s' * (k != 1)}" for k in steps) + " |",
        "|---|---:|" + "---:|" * len(steps),
    ]
    for row in rows:
        cells = [f"{s[f'{metric}_mean']:.2f} ± {s[f'{metric}_ci95']:.2f}" for s in row.summary()]
        lines.append(f"| {row.label} | {len(row.runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def skill_table(rows: Sequence[AgentRow]) -> str:
    """A Markdown table of grouped rows: per agent, the success per skill after the last step.

    The mean over skills comes first: it is the number Meta-World+ ranks agents by.
    """
    summaries = [{str(s["group"]): s for s in row.pooled.group_summary()} for row in rows]
    columns = ["mean", *(name for name in summaries[0] if name != "mean")]
    lines = [
        "| agent | runs | mean over skills | " + " | ".join(columns[1:]) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for row, summary in zip(rows, summaries, strict=True):
        cells = [
            f"{summary[c]['success_mean']:.3f} ± {summary[c]['success_ci95']:.3f}" for c in columns
        ]
        lines.append(f"| {row.label} | {len(row.runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _has_success(rows: Sequence[AgentRow]) -> bool:
    return any(row.pooled.success.any() for row in rows)


def describe_setting(rows: Sequence[AgentRow]) -> str:
    """The common tasks and per-step budget of the compared runs, in a few words.

    A stated protocol says the budget itself: its episodes and horizon may differ from the run's.
    """
    setting, result = rows[0].runs[0].setting, rows[0].runs[0].result
    tasks = f"{setting['family']}: {setting['tasks']} {setting['split']} tasks"
    if result.groups:
        tasks += f" of {len(set(result.groups))} skills"
    tasks += f" (set {setting['task set']})"
    if result.protocol:
        return f"{tasks}, {result.protocol}"
    steps = setting["rollouts per step"] * setting["horizon"]
    return (
        f"{tasks}, {setting['rollouts per step']} rollouts x {setting['horizon']} steps = "
        f"{steps:,} env steps per task and adaptation step"
    )


def plot_comparison(rows: Sequence[AgentRow], path: Path) -> None:
    """Return (and success, where any) against adaptation steps, one line and CI band per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("return", "success") if _has_success(rows) else ("return",)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics) + 1.2, 3.8))
    axes = np.atleast_1d(axes)
    steps = np.arange(rows[0].pooled.returns.shape[0])
    for row in rows:
        summary = row.summary()
        for ax, metric in zip(axes, metrics, strict=True):
            mean = np.array([s[f"{metric}_mean"] for s in summary])
            ci = np.nan_to_num(np.array([s[f"{metric}_ci95"] for s in summary]))
            (line,) = ax.plot(steps, mean, marker="o", label=f"{row.label} ({len(row.runs)})")
            ax.fill_between(steps, mean - ci, mean + ci, alpha=0.15, color=line.get_color())
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_xlabel("adaptation steps")
        ax.set_xticks(steps)
        ax.set_ylabel("mean episode return" if metric == "return" else "success rate")
        ax.grid(alpha=0.3)
    if len(metrics) > 1:
        axes[1].set_ylim(-0.05, 1.05)
    axes[0].legend(title="agent (runs)", fontsize="small")
    # About 13 characters of the title per inch of figure: wrap rather than clip it.
    fig.suptitle(textwrap.fill(describe_setting(rows), int(13 * fig.get_figwidth())), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _link(target: Path, start: Path) -> str:
    """``target`` relative to folder ``start``, so a report reads the same wherever copied."""
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def _run_lines(rows: Sequence[AgentRow], out_dir: Path) -> list[str]:
    lines = [
        "| agent | run | seed | checkpoint | evaluation | videos |",
        "|---|---|---:|---:|---|---|",
    ]
    for row in rows:
        for run in row.runs:
            videos = sorted(
                p
                for p in (run.run_dir / "videos").glob("*")
                if p.suffix in MEDIA_SUFFIXES and p.is_file() and not p.name.startswith(".")
            )
            links = ", ".join(f"[{p.name}]({_link(p, out_dir)})" for p in videos) or "-"
            lines.append(
                f"| {row.label} | [{run.run_dir.name}]({_link(run.run_dir, out_dir)}) "
                f"| {run.config.seed} | {run.iteration} "
                f"| [{run.path.name}]({_link(run.path, out_dir)}) | {links} |"
            )
    return lines


def report_markdown(rows: Sequence[AgentRow], plot: Path, out_dir: Path) -> str:
    """The report: setting, return (and success) tables, the plot, and the runs behind rows.

    Every report states the software versions the evaluations were measured with (Meta-World+
    found unstated version changes made figures incomparable); grouped results (Meta-World+'s)
    first get the success per skill.
    """
    pooled = rows[0].pooled
    lines = [
        f"# Adaptation report: {rows[0].runs[0].setting['family']}",
        "",
        describe_setting(rows) + ". Each cell: mean ± 95% CI after that many adaptation steps, "
        "over tasks and runs (seeds) pooled (normal approximation, n = tasks x runs).",
    ]
    software = ", ".join(f"{name} {version}" for name, version in pooled.versions.items())
    lines += ["", f"Software: {software or 'not recorded'}."]
    if pooled.groups:
        lines += [
            "",
            f"## Success per skill after {adaptation_steps(pooled.returns.shape[0] - 1)}",
            "",
            "Each skill's success rate over its tasks and runs; the mean over skills weighs "
            "skills alike, as Meta-World+ reports it (its CI: the root sum of the skills' "
            "squared CIs over their number).",
            "",
            skill_table(rows),
        ]
    lines += ["", "## Return", "", comparison_table(rows, "return")]
    if _has_success(rows):
        lines += ["", "## Success rate", "", comparison_table(rows, "success")]
    lines += ["", f"![adaptation curves]({_link(plot, out_dir)})", "", "## Runs", ""]
    lines += _run_lines(rows, out_dir)
    return "\n".join(lines) + "\n"


def write_report(rows: Sequence[AgentRow], out_dir: Path) -> list[Path]:
    """Write ``report.md`` and ``report.png`` into ``out_dir``; returns their paths."""
    from metarobot.files import atomic_output

    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, png = out_dir / f"{REPORT_NAME}.md", out_dir / f"{REPORT_NAME}.png"
    with atomic_output(png) as tmp:
        plot_comparison(rows, tmp)
    with atomic_output(markdown) as tmp:
        tmp.write_text(report_markdown(rows, png, out_dir))
    return [markdown, png]
