"""``metarobot render``: film a run adapting to one task, panels side by side, as MP4/GIF/PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from metarobot.cli.evaluate import EVAL_SEED, EVAL_TASKS

MAX_DEFAULT_FPS = 30.0
"""Videos play in real time up to this rate; faster-stepping robots play in slow motion."""


def parse_steps(text: str) -> list[int]:
    """``"0,1,3"`` -> ``[0, 1, 3]``; raises ``ValueError`` naming the bad entry."""
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--adapt-steps takes comma-separated step counts like 0,1,3; got {text!r}"
        ) from None
    if not steps or min(steps) < 0:
        raise ValueError(f"--adapt-steps needs non-negative step counts like 0,1,3; got {text!r}")
    return steps


def add_parser(commands: Any) -> None:
    """Register the ``render`` sub-command."""
    from metarobot.rendering.output import VIDEO_FORMATS
    from metarobot.rendering.selection import TASK_FORMS

    parser = commands.add_parser(
        "render",
        help="film a run adapting to one task (MP4, GIF, PNG key frames)",
        description="Adapt the run's agent to one task and film an episode after each listed "
        "number of adaptation steps, side by side in one labelled video.",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory written by `metarobot train`")
    parser.add_argument("--task", default="test:0", help=f"the task (default test:0): {TASK_FORMS}")
    parser.add_argument(
        "--adapt-steps", default="0,1,3", help="adaptation steps to film, comma-separated"
    )
    parser.add_argument(
        "--rollouts", type=int, help="episodes per adaptation step (default: the run's)"
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="film the mean action, not a sampled one"
    )
    parser.add_argument("--checkpoint", type=int, help="iteration to load (default: latest)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="seed of tasks and rollouts")
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, help="video file (default: RUN_DIR/videos/...)")
    parser.add_argument("--format", choices=VIDEO_FORMATS, help="default: from --out, else mp4")
    parser.add_argument(
        "--frames",
        type=int,
        nargs="?",
        const=6,
        metavar="N",
        help="also write a PNG contact sheet of N key frames (default 6) next to the video",
    )
    parser.add_argument("--width", type=int, default=480, help="panel width in pixels")
    parser.add_argument("--height", type=int, default=360, help="panel height in pixels")
    parser.add_argument(
        "--fps", type=float, help=f"frame rate (default: real time, at most {MAX_DEFAULT_FPS:g})"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Render and write the video (and contact sheet); print the per-panel outcomes."""
    from metarobot.rendering.headless import HeadlessGLError, setup_headless_gl

    try:
        # Before MuJoCo's rendering stack loads; fails with install advice on a bare machine.
        setup_headless_gl()
    except HeadlessGLError as error:
        print(f"metarobot render: error: {error}", file=sys.stderr)
        return 3
    return _render(args)


def _render(args: argparse.Namespace) -> int:
    from metarobot.rendering.output import video_format, write_png, write_video
    from metarobot.rendering.rollouts import render_rollouts
    from metarobot.rendering.selection import select_task
    from metarobot.run.directory import load_run

    steps = parse_steps(args.adapt_steps)
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames needs a positive number of key frames, got {args.frames}")
    if args.fps is not None and args.fps <= 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    fmt = video_format(args.out, args.format) if args.out else (args.format or "mp4")
    parts, iteration = load_run(args.run_dir, args.checkpoint, args.device)
    try:
        task = select_task(parts.family, args.task, args.seed, draw=EVAL_TASKS)
        video = render_rollouts(
            parts,
            task,
            steps,
            seed=args.seed,
            rollouts=args.rollouts,
            deterministic=args.deterministic,
            width=args.width,
            height=args.height,
            progress=not args.no_progress,
        )
    finally:
        parts.close()
    name = f"{task.split}_{task.index:03d}" if task.index >= 0 else f"{task.split}_custom"
    steps_tag = "-".join(str(r.adapt_step) for r in video.rollouts)
    out = args.out or args.run_dir / "videos" / f"{name}_steps{steps_tag}_iter{iteration:06d}.{fmt}"
    written = [write_video(video, out, args.fps or min(video.frame_rate, MAX_DEFAULT_FPS), fmt)]
    if args.frames is not None:
        written.append(write_png(video.contact_sheet(args.frames), out.with_suffix(".png")))
    print(f"task: {task.to_json()}")
    for rollout in video.rollouts:
        success = "" if rollout.succeeded is None else f", success {rollout.succeeded}"
        print(
            f"after {rollout.adapt_step} adaptation steps: return {rollout.episode_return:.2f}"
            f" over {len(rollout.rewards)} steps{success}"
        )
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
