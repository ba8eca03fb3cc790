"""Worker processes that go when they should: a map over items in a process pool whose
workers never see the terminal's Ctrl-C (the parent decides), die with the parent
however it ends (Linux: PR_SET_PDEATHSIG), and, when the parent is interrupted or
terminated, finish the one item each is on and take no other, so nothing is left
behind and nothing hangs.

They are not killed outright: a worker killed while it writes its answer leaves half a
message in the result pipe, and the pool's reading thread then waits for the rest
forever (CI's 200-run stress step met that hang once). An item is one blob.

`--jobs` past what the machine can hold is capped: by the cores this process may use
(the CLI says so), and always by the open-file limit (each worker holds a few pipes)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vmbtool import stop

FDS_PER_WORKER = 8  # pipes and sentinels a pool worker holds in the parent, generously
FDS_KEPT = 64  # left for everything else the parent has open
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def usable_cores() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fd_job_limit() -> int:
    """The most workers the open-file limit leaves room for (a pool past it would fail
    half-way through starting, and hang)."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1 << 16
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(1, (soft - FDS_KEPT) // FDS_PER_WORKER)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this worker when the parent goes (Linux); a worker whose
    parent is already gone ends at once."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_start(parent: int) -> None:
    """In each worker, before any item: the stop signals are the parent's business (a
    Ctrl-C reaches the whole process group; the parent then kills its workers), so they
    are ignored here, then unblocked (they were blocked across the fork)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _die_with_parent(parent)


class WorkerDied(Exception):
    """A worker process ended before it gave the answer for `index`."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def map_in_workers(function: Callable[[Any], Any], items: list[Any], jobs: int,
                   chunksize: int = 1) -> Iterator[Any]:
    """`function` over `items` in `jobs` worker processes: the answers in order, as
    they come. A worker's exception is raised here; a worker that dies raises
    WorkerDied naming the first item left without an answer. Leaving the iteration
    early (an exception, Ctrl-C, SIGTERM, or closing the generator) cancels every item
    not yet taken and waits for the ones being worked on."""
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # fork: the workers start with vmbtool already imported (Linux only; elsewhere the
    # platform's default start method)
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux")
                                          else None)
    executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_start,
                                   initargs=(os.getpid(),))
    given = 0
    try:
        answers = _start(executor, function, items, chunksize, gc)
        for answer in answers:
            stop.check()
            given += 1
            yield answer
    except BrokenProcessPool:
        raise WorkerDied(given) from None
    finally:
        # with the stop signals held: a stop that interrupted the shutdown half-way left
        # the workers waiting and the interpreter's exit joining them forever (the
        # stress step met it); held, it is raised once the workers are gone
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            executor.shutdown(wait=True, cancel_futures=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start(executor: Any, function: Callable[[Any], Any], items: Iterable[Any],
           chunksize: int, gc: Any) -> Iterator[Any]:
    """Hand out every item. The workers are forked here, with the stop signals blocked
    so that none arrives in a worker before it ignores them (it would print a
    traceback); one that came meanwhile reaches this process once they are unblocked.
    Frozen, the inherited heap is left alone by the workers' collections (its pages
    stay shared)."""
    freeze = gc.get_freeze_count() == 0
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if freeze:
        gc.freeze()
    try:
        return executor.map(function, items, chunksize=chunksize)
    finally:
        if freeze:
            gc.unfreeze()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
