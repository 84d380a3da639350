"""Checkpoint files: which ones pruning keeps."""

from pathlib import Path

import pytest

from metarobot.files import temporary_path
from metarobot.run.checkpoints import checkpoint_path, list_checkpoints, prune_checkpoints


@pytest.mark.parametrize(
    ("keep_last", "keep_every", "kept"),
    [
        (1, 0, [0, 9]),
        (2, 0, [0, 8, 9]),
        (1, 4, [0, 4, 8, 9]),
        (3, 4, [0, 4, 7, 8, 9]),
    ],
)
def test_pruning_keeps_the_first_the_newest_and_every_kth(
    tmp_path: Path, keep_last: int, keep_every: int, kept: list[int]
) -> None:
    for iteration in range(10):
        checkpoint_path(tmp_path, iteration).write_bytes(b"")
    temporary_path(checkpoint_path(tmp_path, 10)).write_bytes(b"")  # a write in progress
    prune_checkpoints(tmp_path, keep_last, keep_every)
    assert list(list_checkpoints(tmp_path)) == kept
    assert temporary_path(checkpoint_path(tmp_path, 10)).exists()
