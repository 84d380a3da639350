"""Atomic checkpoints: a run killed at any moment leaves only whole files behind.

Every file of a run directory that is rewritten (checkpoints, ``metrics.csv``, ``config.toml``)
goes through :func:`atomic_write`: the bytes go to a temporary file next to the target, are
flushed to disk, and the file is renamed over its final name (atomic on POSIX), so readers see
either the previous version or the new one, even after a kill or a power cut. A kill can leave
a ``*.tmp`` file behind; it is never read, and a resumed run removes it.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
_NAME = re.compile(r"^iter_(\d{6})\.pt$")
TMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once: temp file, fsync, rename, fsync the directory.

    The directory's fsync makes the rename itself durable, so that after a power cut the file
    is the new version or the old one, never missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_temporary_files(directory: Path) -> list[Path]:
    """Delete the ``*.tmp`` leftovers of writes a kill interrupted; returns what was deleted."""
    leftovers = sorted(directory.glob(f"*{TMP_SUFFIX}")) if directory.is_dir() else []
    for path in leftovers:
        path.unlink()
    return leftovers


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
    """Write ``state`` atomically (see :func:`atomic_write`)."""
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


def prune_checkpoints(directory: Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest checkpoints, always keeping iteration 0."""
    found = list_checkpoints(directory)
    for iteration in list(found)[:-keep_last]:
        if iteration != 0:
            found[iteration].unlink()
