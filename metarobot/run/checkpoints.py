"""Checkpoint files: ``checkpoints/iter_<iteration>.pt``, written whole or not at all.

A checkpoint is a plain dict of tensors and values (``torch.load(weights_only=True)`` reads it)
written through :func:`metarobot.files.atomic_write`, so a run killed at any moment leaves only
whole checkpoints behind.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from metarobot.files import atomic_write

FORMAT_VERSION = 1
_NAME = re.compile(r"^iter_(\d{6})\.pt$")


def checkpoint_path(directory: Path, iteration: int) -> Path:
    """Where the checkpoint taken after ``iteration`` updates lives."""
    return directory / f"iter_{iteration:06d}.pt"


def list_checkpoints(directory: Path) -> dict[int, Path]:
    """Checkpoints in ``directory`` by iteration, ignoring temporary files."""
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (see :func:`metarobot.files.atomic_write`)."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: Path, expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint, refusing corrupt files and checkpoints of another run kind.

    Args:
        path: The checkpoint file.
        expect: Entries that must match (e.g. ``{"agent_name": "maml", "family": "Reach"}``).

    Raises:
        ValueError: The file is missing, truncated, corrupt, or does not match ``expect``.
    """
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a damaged zip or pickle
        raise ValueError(f"checkpoint {path} is corrupt or truncated ({error})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a metarobot checkpoint (format {FORMAT_VERSION})")
    for key, wanted in (expect or {}).items():
        if state.get(key) != wanted:
            raise ValueError(
                f"checkpoint {path} is for {key} {state.get(key)!r}, but this run uses {wanted!r}"
            )
    if not isinstance(state.get("agent"), dict):
        raise ValueError(f"checkpoint {path} holds no agent state")
    return state


def prune_checkpoints(directory: Path, keep_last: int, keep_every: int = 0) -> None:
    """Delete all but the ``keep_last`` newest checkpoints and iteration 0.

    With ``keep_every`` > 0, the iterations that are multiples of it are kept too.
    """
    found = list_checkpoints(directory)
    for iteration in list(found)[:-keep_last]:
        if iteration != 0 and not (keep_every and iteration % keep_every == 0):
            found[iteration].unlink()
