"""Writing frames: MP4 (imageio-ffmpeg), GIF and PNG, always atomically.

Every file is written through :func:`metarobot.files.atomic_output`, renamed over its final
name only once complete, so an error (a bad argument found late, a full disk, Ctrl-C) never
leaves a truncated video that looks like a result.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from metarobot.files import atomic_output

VIDEO_FORMATS: tuple[str, ...] = ("mp4", "gif")
"""Formats :func:`write_video` writes, named by their file extension."""


def video_format(path: Path, fmt: str | None = None) -> str:
    """The format to write ``path`` in: ``fmt`` if given, else its extension; checked early.

    Raises:
        ValueError: The format is unknown, or contradicts the extension of ``path``.
    """
    suffix = path.suffix.lower().lstrip(".")
    chosen = fmt or suffix
    if chosen not in VIDEO_FORMATS:
        raise ValueError(
            f"cannot write video {str(path)!r} as {chosen or 'a file without extension'!r}; "
            f"valid formats: {', '.join(VIDEO_FORMATS)} (from the extension or --format)"
        )
    if suffix != chosen:
        raise ValueError(f"{str(path)!r} does not end in .{chosen}; name it {path.stem}.{chosen}")
    return chosen


def write_video(
    frames: Iterable[np.ndarray], path: Path, fps: float, fmt: str | None = None
) -> Path:
    """Write ``[H, W, 3]`` uint8 frames as an MP4 (H.264) or a looping GIF.

    Frames are streamed to the encoder, so long videos need not fit in memory twice. MP4 frame
    sizes must be even (:class:`~metarobot.rendering.compose.GridLayout` makes them so); they
    are not rescaled.
    """
    chosen = video_format(path, fmt)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError(f"no frames to write to {str(path)!r}")
    with atomic_output(path) as tmp:
        (_write_mp4 if chosen == "mp4" else _write_gif)(
            itertools.chain([first], iterator), tmp, fps
        )
    return path


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    import imageio.v2 as imageio

    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        fps=fps,
        codec="libx264",
        quality=8,
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    from PIL import Image

    images = (Image.fromarray(frame) for frame in frames)
    first = next(images)
    # GIF stores delays in hundredths of a second.
    first.save(path, save_all=True, append_images=images, duration=round(1000 / fps), loop=0)


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write one ``[H, W, 3]`` uint8 image as a PNG."""
    from PIL import Image

    if path.suffix.lower() != ".png":
        raise ValueError(f"{str(path)!r} does not end in .png")
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, optimize=True)
    return path
