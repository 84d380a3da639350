"""Rendering: rollouts to frames to MP4/GIF/PNG, side-by-side grids of before/after adaptation.

``render_rollouts(parts, task, adapt_steps, seed=...)`` adapts a loaded run's agent to one task
and films an episode after each requested number of adaptation steps; the returned
:class:`AdaptationVideo` is a sequence of labelled grid frames, which :func:`write_video` writes
as MP4 or GIF and :meth:`AdaptationVideo.contact_sheet` turns into a PNG of key frames::

    from metarobot.rendering import render_rollouts, select_task, write_video
    from metarobot.run.directory import load_run

    parts, _ = load_run(Path("runs/nav"))
    task = select_task(parts.family, "test:7", seed=1000)
    video = render_rollouts(parts, task, (0, 1, 3), seed=1000)
    write_video(video, Path("nav.mp4"), fps=20)

Modules: ``headless`` (OpenGL backend choice), ``scene`` (camera and goal markers per family),
``compose`` (labels and grids), ``output`` (atomic MP4/GIF/PNG writing), ``selection``
(``test:7``-style task choice), ``rollouts`` (adaptation and filming). The names below load
lazily, so that importing ``headless`` (which must run before MuJoCo creates a GL context)
pulls in neither torch nor MuJoCo.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metarobot.rendering.compose import GridLayout, PanelLabel
    from metarobot.rendering.headless import HeadlessGLError, setup_headless_gl
    from metarobot.rendering.output import VIDEO_FORMATS, write_png, write_video
    from metarobot.rendering.rollouts import AdaptationVideo, RenderedRollout, render_rollouts
    from metarobot.rendering.scene import Stage
    from metarobot.rendering.selection import select_task

_LAZY = {
    "GridLayout": "compose",
    "PanelLabel": "compose",
    "HeadlessGLError": "headless",
    "setup_headless_gl": "headless",
    "VIDEO_FORMATS": "output",
    "write_png": "output",
    "write_video": "output",
    "AdaptationVideo": "rollouts",
    "RenderedRollout": "rollouts",
    "render_rollouts": "rollouts",
    "select_task": "selection",
    "Stage": "scene",
}

__all__ = [
    "VIDEO_FORMATS",
    "AdaptationVideo",
    "GridLayout",
    "HeadlessGLError",
    "PanelLabel",
    "RenderedRollout",
    "Stage",
    "render_rollouts",
    "select_task",
    "setup_headless_gl",
    "write_png",
    "write_video",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
