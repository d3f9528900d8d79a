"""CPU parallelism by threads that each run torch with one intra-op thread.

The work here is many medium-sized tensor operations (one utterance's MFCCs, one chunk's distances). With
torch's own intra-op threads every operation pays an OpenMP fork/join, and on a machine whose cores are busy
with other processes the waiting threads make it 5-15x slower. Independent pieces on separate Python threads
(torch releases the GIL), each single-threaded, scale with the cores and degrade gracefully under load.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOLS: dict[int, ThreadPoolExecutor] = {}


def cpu_workers() -> int:
    """Threads to use: torch's intra-op setting (torchrun sets OMP_NUM_THREADS=1 per process when nproc > 1)."""
    import torch

    return max(1, torch.get_num_threads())


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # applies to this OS thread only; the caller's setting is unchanged


def pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, initializer=_one_thread, thread_name_prefix="s3l-worker")
    return _POOLS[workers]


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` in order on ``workers`` threads, with at most ``workers`` items in flight (so a lazy
    ``items`` of large chunks is never read ahead)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    ex = pool(workers)
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(ex.submit(fn, item))
        if len(pending) >= workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class single_threaded:  # noqa: N801 (a context manager used like a function)
    """Run the calling thread's torch operations on one intra-op thread inside the block (restored after)."""

    def __enter__(self) -> None:
        import torch

        self.saved = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.saved)
