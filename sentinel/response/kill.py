"""Kill a frozen tree: `cgroup.kill` for a v2 cgroup, else SIGKILL through each pidfd."""

from __future__ import annotations

import select
import signal
import time
from dataclasses import dataclass, field

from sentinel.response.freeze import Frozen

WAIT = 2.0  # seconds to wait for the killed to exit


@dataclass
class Killed:
    method: str
    killed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    ok: bool = True
    detail: str = ""


def _wait_exit(fds: dict[int, int], timeout: float) -> list[int]:
    """Pids whose pidfd did not become readable (still alive) within `timeout`."""
    poller = select.poll()
    for fd in fds.values():
        poller.register(fd, select.POLLIN)
    left = {fd: pid for pid, fd in fds.items()}
    deadline = time.monotonic() + timeout
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, _ in poller.poll(remaining * 1000):
            poller.unregister(fd)
            left.pop(fd, None)
    return sorted(left.values())


def kill(frozen: Frozen) -> Killed:
    """Kill every held process of `frozen`, each identity checked before its signal; a v2
    cgroup also gets `cgroup.kill` (children it forked are in it), and every held process
    its SIGKILL as well: one moved out of the frozen cgroup (a delegated subtree lets its
    owner do that) thaws where it lands and `cgroup.kill` no longer reaches it."""
    cg = frozen.cgroup
    out = Killed("sigkill")
    grouped = False
    if cg is not None and cg.version == "v2":
        try:
            cg.write("cgroup.kill", "1")
            out.method, grouped = f"cgroup.kill {cg}", True
        except OSError as exc:
            out.method = f"sigkill (cgroup.kill failed: {exc.strerror})"
    for pid, held in frozen.held.items():
        why = held.send(signal.SIGKILL)
        if why and not (grouped and why == "exited"):
            out.skipped[pid] = why
        else:
            out.killed.append(pid)
    if cg is not None and cg.version == "v1":
        cg.freeze(False)  # v1 frozen tasks only die once thawed
    alive = _wait_exit({p: frozen.held[p].fd for p in out.killed}, WAIT)
    if alive:
        out.ok, out.detail = False, f"still alive after {WAIT}s: {alive}"
    return out
