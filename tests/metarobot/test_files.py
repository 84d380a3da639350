from pathlib import Path

import pytest

from metarobot.files import atomic_output, atomic_write, remove_temporary_files, temporary_path


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.csv"
    atomic_write(path, b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]


def test_a_failed_write_keeps_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == path.parent  # encoders pick by extension
        tmp.write_bytes(b"half a vid")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


def test_leftovers_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    leftover = temporary_path(tmp_path / "iter_000003.pt")
    leftover.write_bytes(b"trunc")
    (tmp_path / "iter_000002.pt").write_bytes(b"whole")
    assert remove_temporary_files(tmp_path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_000002.pt"]
    assert remove_temporary_files(tmp_path / "missing") == []
