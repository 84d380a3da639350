"""CPU threads for torch: one while sampling, every core during the meta-update.

Sampling runs small matrix products next to env-stepping workers, where extra intra-op threads
only fight the workers for cores (oversubscribed, they slow an iteration tenfold). The
meta-update runs while the workers wait, on large products that scale with cores. Keeping
both choices here leaves one place that sets torch's thread count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_torch_threads(count: int) -> None:
    """Give torch ``count`` intra-op threads from now on (a worker process, a CPU run)."""
    if count < 1:
        raise ValueError(f"thread count must be >= 1, got {count}")
    torch.set_num_threads(count)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch CPU work with ``count`` intra-op threads, restoring the previous count after.

    Results are deterministic for a given count: a CPU matrix product splits its sums by
    thread, so another count changes the last bits.
    """
    previous = torch.get_num_threads()
    if count == previous:
        yield
        return
    set_torch_threads(count)
    try:
        yield
    finally:
        set_torch_threads(previous)
