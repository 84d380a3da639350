import pytest
import torch

import metarobot.threads as threads
from metarobot.threads import available_cores, cpu_threads, set_cpu_threads, torch_threads


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


def test_cpu_threads_count_0_as_every_core_and_leave_other_devices(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 7)
    calls = []
    monkeypatch.setattr(threads, "torch_threads", calls.append)
    cpu_threads("cpu", 0)
    cpu_threads(torch.device("cpu"), 3)
    cpu_threads("cuda", 0)
    assert calls == [7, 3]


def test_set_cpu_threads_sets_the_count_for_the_cpu_only():
    before = torch.get_num_threads()
    try:
        set_cpu_threads("cpu", before + 1)
        assert torch.get_num_threads() == before + 1
        set_cpu_threads("cuda", before + 2)
        assert torch.get_num_threads() == before + 1
        set_cpu_threads("cpu")
        assert torch.get_num_threads() == threads.SAMPLING_THREADS
    finally:
        torch.set_num_threads(before)
