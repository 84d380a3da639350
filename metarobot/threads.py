"""CPU threads for torch: one while sampling, every core during the meta-update.

Sampling runs small matrix products next to env-stepping workers, where extra intra-op threads
only fight the workers for cores (oversubscribed, they slow an iteration tenfold). The
meta-update runs while the workers wait, on large products that scale with cores. Both choices
go through :func:`cpu_threads` (for a block) or :func:`set_cpu_threads` (for the rest of the
process), so that one rule decides torch's thread count: only work on the CPU is touched, and a
count of 0 means every core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

SAMPLING_THREADS = 1
"""Intra-op threads of sampling, and of a CPU run's driver outside its meta-update.

Besides the contention above, one thread keeps episodes bitwise identical across backends: with
several, a CPU matrix product is split differently for different batch shapes (one task alone
takes another path than the same task in a batch), and the last bits differ.
"""


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads(
    device: torch.device | str, count: int = SAMPLING_THREADS
) -> AbstractContextManager[None]:
    """Run a block's torch work on ``device`` with ``count`` CPU threads (0: every core).

    Work on a GPU leaves the count as it is: its kernels do not run on these threads.
    """
    threads = _cpu_count(device, count)
    return nullcontext() if threads is None else torch_threads(threads)


def set_cpu_threads(device: torch.device | str, count: int = SAMPLING_THREADS) -> None:
    """:func:`cpu_threads` from now on, for a process's torch work on ``device``."""
    threads = _cpu_count(device, count)
    if threads is not None:
        set_torch_threads(threads)


def _cpu_count(device: torch.device | str, count: int) -> int | None:
    """The thread count for ``count`` on ``device``; ``None`` where threads do not apply."""
    if torch.device(device).type != "cpu":
        return None
    return count or available_cores()


def set_torch_threads(count: int) -> None:
    """Give torch ``count`` intra-op threads from now on."""
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
