import pytest
import torch

from metarobot.threads import available_cores, torch_threads


def test_torch_threads_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_torch_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_torch_threads_rejects_non_positive_counts():
    with pytest.raises(ValueError, match="thread count must be >= 1, got 0"), torch_threads(0):
        pass


def test_available_cores_is_positive():
    assert available_cores() >= 1
