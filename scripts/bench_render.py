"""Rendering throughput: frames per second of every family, and of grid composition and encoding.

Per family, at one panel size (480x360 by default), with the headless backend that
``metarobot render`` picks (EGL first):

- ``env.render()``: Gymnasium's ``rgb_array`` path with the env's default camera;
- filmed: what ``metarobot render`` does per panel frame: step the env with a random action,
  aim the family's camera, add goal markers and the trail, render.

Then, for three such panels side by side: composing a labelled grid frame, and composing plus
encoding it to MP4 (H.264) and GIF. Medians of several repeats, written to
``benchmarks/render.md``.

Usage: ``python scripts/bench_render.py [--frames 60] [--repeats 5] [--width 480 --height 360]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import mujoco
import numpy as np

import envs
from metarobot.rendering.compose import GridLayout, PanelLabel, compose
from metarobot.rendering.headless import setup_headless_gl
from metarobot.rendering.output import write_video
from metarobot.rendering.scene import Stage


def rate(frames: int, run: Callable[[], object]) -> float:
    """Frames per second of ``run``, which produces ``frames`` frames."""
    start = time.perf_counter()
    run()
    return frames / (time.perf_counter() - start)


def median_rate(repeats: int, frames: int, run: Callable[[], object]) -> float:
    run()  # warm-up: GL context, shader compilation, first allocations
    return statistics.median(rate(frames, run) for _ in range(repeats))


def filmed_frames(stage: Stage, frames: int) -> list[np.ndarray]:
    """One episode's worth of decorated frames (reset when the episode ends)."""
    rng = np.random.default_rng(0)
    stage.reset(seed=0)
    images = []
    for _ in range(frames):
        images.append(stage.render())
        *_, terminated, truncated, _ = stage.env.step(
            rng.uniform(-1, 1, stage.env.action_space.shape)
        )
        if terminated or truncated:
            stage.reset(seed=0)
    return images


def gl_renderer(stage: Stage) -> str:
    """The OpenGL renderer string (e.g. Mesa llvmpipe: software rendering on the CPU)."""
    from OpenGL import GL

    stage.env.mujoco_renderer._get_viewer(render_mode="rgb_array").make_context_current()
    name = GL.glGetString(GL.GL_RENDERER)
    return name.decode() if isinstance(name, bytes) else str(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/render.md"))
    args = parser.parse_args()
    n, w, h = args.frames, args.width, args.height
    backend = setup_headless_gl()  # before the first GL context, as `metarobot render` does
    load_before = os.getloadavg()[0]

    rows = []
    renderer = ""
    panels: list[np.ndarray] = []
    for name in envs.FAMILIES:
        task = envs.get_family(name).sample_tasks(1, "test", seed=0)[0]
        stage = Stage(name, task, w, h)
        stage.reset(seed=0)
        plain = median_rate(args.repeats, n, lambda s=stage: [s.env.render() for _ in range(n)])
        filmed = median_rate(args.repeats, n, lambda s=stage: filmed_frames(s, n))
        renderer = renderer or gl_renderer(stage)
        if name == "PointNav2D":
            panels = filmed_frames(stage, n)
        stage.close()
        rows.append((name, plain, filmed))
        print(f"{name:16s} env.render {plain:6.1f} fps   filmed {filmed:6.1f} fps")

    layout = GridLayout.for_panels(3, w, h)
    labels = [PanelLabel("adapt step 1 | t 40/100 | return -12.3", "goal (+0.30, -0.20)", True)] * 3

    def grid_frames() -> list[np.ndarray]:
        return [compose(layout, [image] * 3, labels) for image in panels]

    composed = median_rate(args.repeats, n, grid_frames)
    encoded = {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("mp4", "gif"):
            path = Path(folder) / f"bench.{fmt}"
            encoded[fmt] = median_rate(
                args.repeats, n, lambda p=path: write_video(grid_frames(), p, fps=20)
            )
    grid = f"{layout.shape[1]}x{layout.shape[0]}"
    print(
        f"compose 3-panel grid ({grid}) {composed:.1f} fps, + MP4 {encoded['mp4']:.1f} fps, "
        f"+ GIF {encoded['gif']:.1f} fps"
    )

    load_after = os.getloadavg()[0]
    lines = [
        "# Rendering throughput",
        "",
        f"`python scripts/bench_render.py --frames {n} --repeats {args.repeats} --width {w} "
        f"--height {h}` on {date.today()}: {platform.machine()}, {os.cpu_count()} cores, no GPU; "
        f"MUJOCO_GL={backend} ({renderer}), mujoco {mujoco.__version__}. Medians of "
        f"{args.repeats} runs of {n} frames at {w}x{h} per panel. The machine was shared "
        f"(1-minute load average {load_before:.1f} before, {load_after:.1f} after), so "
        "absolute numbers are indicative; software rendering scales with the free cores.",
        "",
        "- **env.render**: Gymnasium's `rgb_array` path, the env's default camera.",
        "- **filmed**: what `metarobot render` does per panel frame: one env step with a random "
        "action, the family's camera aimed, goal markers and trail added, rendered. PointNav2D "
        "and tabletop views from straight above skip shadows (MuJoCo's 4096-pixel shadow map "
        "dominates a software-rendered frame and adds nothing seen from above).",
        "",
        "| family | env.render (frames/s) | filmed (frames/s) |",
        "|---|---:|---:|",
        *(f"| {name} | {plain:.1f} | {filmed:.1f} |" for name, plain, filmed in rows),
        "",
        f"Three PointNav2D panels side by side ({grid} frames with labels):",
        "",
        "| stage | grid frames/s |",
        "|---|---:|",
        f"| compose (labels drawn with Pillow) | {composed:.1f} |",
        f"| compose + encode MP4 (H.264, imageio-ffmpeg) | {encoded['mp4']:.1f} |",
        f"| compose + encode GIF (Pillow) | {encoded['gif']:.1f} |",
        "",
        "A video of `P` panels over `T` steps costs about `P * T / filmed` seconds of rendering "
        "plus `T / encode` seconds of composition and encoding, on top of the adaptation "
        "rollouts.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
