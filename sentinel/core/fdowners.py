"""Who holds what open: scans of /proc/*/fd, off the event loop and within a time budget.

A user can make such a scan expensive at will (five processes holding 20,000 fds each
make it 100,000 readlinks), so every scan runs on one worker thread, one at a time, and
stops when its budget is spent; what it found by then is returned and the cut is
counted in `sentinel_errors_total{component="fdscan.budget"}`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from sentinel.core import proctable
from sentinel.ops import metrics

BUDGET = 2.0  # seconds one scan may take
_pool: ThreadPoolExecutor | None = None


def _scan(
    procfs: str,
    on_link: Callable[[int, str], bool],
    budget: float,
    newest_first: bool,
    first: Iterable[int] = (),
) -> None:
    """Call `on_link(pid, target)` for every fd of every process, the pids in `first`
    before the others, until it returns True (done) or the budget is spent."""
    deadline = time.monotonic() + budget
    for pid in _order(procfs, newest_first, first):
        fd_dir = f"{procfs}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
            if not fds:  # a leader that exited holds no fds: its live threads do
                tid = proctable.live_task(pid, procfs)
                if tid is None:
                    continue
                fd_dir = f"{procfs}/{pid}/task/{tid}/fd"
                fds = os.listdir(fd_dir)
        except OSError:
            continue
        for i, fd in enumerate(fds):
            if i % 256 == 0 and time.monotonic() > deadline:
                metrics.errors.labels("fdscan.budget").inc()
                return
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if on_link(pid, target):
                return


def _order(procfs: str, newest_first: bool, first: Iterable[int]) -> Iterator[int]:
    """`first`, then every other pid of procfs (listed only once `first` is used up)."""
    done: set[int] = set()
    for pid in first:
        done.add(pid)
        yield pid
    try:
        pids = [int(n) for n in os.listdir(procfs) if n.isdigit()]
    except OSError:
        return
    pids.sort(reverse=newest_first)
    yield from (pid for pid in pids if pid not in done)


def socket_owners(
    inodes: set[int], procfs: str = "/proc", budget: float = BUDGET, first: Iterable[int] = ()
) -> dict[int, int]:
    """inode -> pid for these sockets. The pids in `first` are read first (those likely to
    hold a new socket: see ProcTable.recent), then the newest processes: a socket of a
    process that is active costs a few reads, not a pass over every sleeping process."""
    found: dict[int, int] = {}
    want = set(inodes)

    def on_link(pid: int, target: str) -> bool:
        if target.startswith("socket:["):
            inode = int(target[8:-1])
            if inode in want:
                want.discard(inode)
                found[inode] = pid
        return not want

    if want:
        _scan(procfs, on_link, budget, newest_first=True, first=first)
    return found


def holders(path: str, procfs: str = "/proc", skip: int = 0, budget: float = BUDGET) -> list[int]:
    """Processes (but `skip`) that hold `path` open right now."""
    out: list[int] = []

    def on_link(pid: int, target: str) -> bool:
        if target == path and pid != skip and (not out or out[-1] != pid):
            out.append(pid)
        return False

    _scan(procfs, on_link, budget, newest_first=False)
    return out


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-fd")
    return _pool


def holders_then(path: str, procfs: str, skip: int, then: Callable[[list[int]], None]) -> None:
    """From the loop: scan for the holders of `path` off the loop, then call `then(pids)`
    back on the loop."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_executor(), holders, path, procfs, skip)
    future.add_done_callback(lambda f: None if f.cancelled() else then(f.result()))
