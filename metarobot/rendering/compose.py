"""Frames to pictures: labelled panels in a grid, and contact sheets of key frames.

Each panel is a scene image under a label band (so the label never hides the robot or the goal):
the title line says after how many adaptation steps, at which time step and with what return so
far; a badge says whether the episode has succeeded yet; the detail line describes the task. Text
is drawn with Pillow's bundled font (Pillow comes with matplotlib), so nothing else is needed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (24, 24, 28)
"""Label bands and the gaps between panels."""
TEXT = (240, 240, 240)
SUCCESS = (90, 220, 110)
FAILURE = (150, 150, 150)
GAP = 2
"""Pixels between panels, and between the rows of a contact sheet (doubled)."""


@dataclass(frozen=True)
class PanelLabel:
    """What one panel's label band says.

    Attributes:
        title: First line, e.g. ``"adapt step 3 | t 40/100 | return -12.3"``.
        detail: Second line: the task and how the robot is doing on it.
        success: Whether the episode has succeeded so far; ``None`` for families without success.
    """

    title: str
    detail: str
    success: bool | None = None


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("labels need a Pillow built with FreeType (the PyPI wheels are)")
    return font


@dataclass(frozen=True)
class GridLayout:
    """Where panels go: ``columns`` per row, each a label band over a ``width x height`` scene.

    Attributes:
        panels: Number of panels.
        width: Scene width of a panel (pixels).
        height: Scene height of a panel (pixels).
        columns: Panels per row.
    """

    panels: int
    width: int
    height: int
    columns: int

    @classmethod
    def for_panels(cls, panels: int, width: int, height: int) -> GridLayout:
        """Side by side up to four panels, then a near-square grid."""
        if panels < 1:
            raise ValueError(f"need at least one panel, got {panels}")
        columns = panels if panels <= 4 else math.ceil(math.sqrt(panels))
        return cls(panels, width, height, columns)

    @property
    def rows(self) -> int:
        """Rows of panels."""
        return math.ceil(self.panels / self.columns)

    @property
    def font_size(self) -> int:
        """Label font size, scaled with the panel width so labels fit."""
        return max(9, min(20, self.width // 28))

    @property
    def band(self) -> int:
        """Height of a panel's label band: two lines of text and padding."""
        ascent, descent = _font(self.font_size).getmetrics()
        return 2 * (ascent + descent) + 6

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of a composed frame, rounded up to even sizes (H.264 needs them)."""
        height = self.rows * (self.band + self.height) + (self.rows - 1) * GAP
        width = self.columns * self.width + (self.columns - 1) * GAP
        return height + height % 2, width + width % 2

    def origin(self, panel: int) -> tuple[int, int]:
        """``(top, left)`` of panel ``panel``'s label band."""
        if not 0 <= panel < self.panels:
            raise IndexError(f"panel {panel} out of range for {self.panels} panels")
        row, column = divmod(panel, self.columns)
        return row * (self.band + self.height + GAP), column * (self.width + GAP)

    def scene_box(self, panel: int) -> tuple[slice, slice]:
        """Row and column slices of panel ``panel``'s scene image within a composed frame."""
        top, left = self.origin(panel)
        top += self.band
        return slice(top, top + self.height), slice(left, left + self.width)


def label_band(label: PanelLabel, width: int, height: int, font_size: int) -> np.ndarray:
    """A ``[height, width, 3]`` band with the label's two lines and its success badge.

    The badge is right-aligned on the title line when it fits; a success also draws a green
    rule under the band, which stays visible in panels too narrow for the word.
    """
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    pad = 3
    ascent, descent = font.getmetrics()
    draw.text((pad, pad), label.title, font=font, fill=TEXT)
    if label.success is not None:
        badge = "success" if label.success else "no success"
        x = width - pad - draw.textlength(badge, font=font)
        if x >= draw.textlength(label.title, font=font) + 3 * pad:
            draw.text((x, pad), badge, font=font, fill=SUCCESS if label.success else FAILURE)
        if label.success:
            draw.rectangle((0, height - 2, width, height), fill=SUCCESS)
    draw.text((pad, pad + ascent + descent), label.detail, font=font, fill=TEXT)
    return np.asarray(image)


def compose(
    layout: GridLayout, images: Sequence[np.ndarray], labels: Sequence[PanelLabel]
) -> np.ndarray:
    """One grid frame from each panel's scene image and label."""
    if len(images) != layout.panels or len(labels) != layout.panels:
        raise ValueError(
            f"layout has {layout.panels} panels, got {len(images)} images, {len(labels)} labels"
        )
    frame = np.empty((*layout.shape, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    for panel, (image, label) in enumerate(zip(images, labels, strict=True)):
        if image.shape != (layout.height, layout.width, 3):
            raise ValueError(
                f"panel {panel} image has shape {image.shape}, expected "
                f"{(layout.height, layout.width, 3)}"
            )
        top, left = layout.origin(panel)
        frame[top : top + layout.band, left : left + layout.width] = label_band(
            label, layout.width, layout.band, layout.font_size
        )
        frame[layout.scene_box(panel)] = image
    return frame


def key_frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over the video, always ending with the last frame.

    The last frame comes first because it holds the whole outcome (final return, success, the
    full trail); one key frame is therefore the last one, two are the first and the last.
    """
    if num_frames < 1 or count < 1:
        raise ValueError(f"need frames and a positive count, got {num_frames} and {count}")
    spread = np.linspace(num_frames - 1, 0, min(count, num_frames))
    return sorted({round(i) for i in spread})


def contact_sheet(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Frames of equal size stacked top to bottom, separated by a gap."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    height, width, _ = frames[0].shape
    sheet = np.empty((len(frames) * (height + 2 * GAP) - 2 * GAP, width, 3), dtype=np.uint8)
    sheet[:] = BACKGROUND
    for row, frame in enumerate(frames):
        top = row * (height + 2 * GAP)
        sheet[top : top + height] = frame
    return sheet
