"""One atomic file writer: a file is replaced whole or not at all.

Every file metarobot rewrites (checkpoints, ``metrics.csv``, ``config.toml``, evaluation
results, videos, reports) goes through :func:`atomic_output`: it is written under a temporary
name next to its target, flushed to disk, and renamed over the final name (atomic on POSIX), so
readers see either the previous version or the new one, even after a kill or a power cut. The
temporary name keeps the extension (ffmpeg and Pillow choose the container from it). An error
deletes it; a kill can leave it behind, where it is never read and
:func:`remove_temporary_files` (called on resume) deletes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp"
"""What the name of a temporary file holds after its target's name."""


def temporary_path(path: Path) -> Path:
    """Where :func:`atomic_output` writes ``path`` before renaming it (``x.csv.tmp.csv``)."""
    return path.with_name(f"{path.name}{TMP_MARK}{path.suffix}")


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; if the block succeeds, make it ``path``.

    The file is fsynced before the rename and the directory after it, which makes the rename
    itself durable: after a power cut the file is the new version or the old one, never
    missing. On an exception the temporary file is deleted and the exception propagates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        _fsync(tmp)
        tmp.replace(path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def remove_temporary_files(directory: Path) -> list[Path]:
    """Delete the leftovers of writes a kill interrupted; returns what was deleted."""
    leftovers = sorted(directory.glob(f"*{TMP_MARK}*")) if directory.is_dir() else []
    for path in leftovers:
        path.unlink()
    return leftovers


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
