"""What changes about a process after it was first read: its executable or payload
deleted (or replaced by an upgrade), its main thread gone while other threads run.

`changes` costs one lstat per distinct executable path (per cgroup: a container sees its
own files) and one per distinct loader or interpreter payload; a process whose path no
longer holds the file it runs (by device and inode, read when it was first seen) costs
one readlink of /proc/PID/exe more, which tells whether its executable was deleted. So
10,000 workers of one program cost one lstat a sweep, and at worst each live process
costs one readlink. Processes already known deleted, or whose leader exited, are not
read again here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from sentinel.core import proctable
from sentinel.core.model import Proc


class _Paths:
    """lstat results of paths inside process roots, each (cgroup, path) read once."""

    def __init__(self, procfs: str) -> None:
        self.procfs = procfs
        self.ids: dict[tuple[str, str], int] = {}

    def file_id(self, pid: int, proc: Proc, path: str) -> int:
        """file_id of what stands at `path` for this process (0: nothing)."""
        key = (proc.cgroup, path)
        found = self.ids.get(key)
        if found is None:
            try:
                found = proctable.file_id(os.lstat(f"{self.procfs}/{pid}/root{path}"))
            except OSError:
                found = 0
            self.ids[key] = found
        return found


def _exe_deleted(pid: int, proc: Proc, paths: _Paths) -> Proc | None:
    """The process with its new state when its executable was deleted since it was read."""
    if proc.exe_deleted or not proc.exe or proc.exe.startswith("/memfd:"):
        return None
    if proc.exe_id and paths.file_id(pid, proc, proc.exe) == proc.exe_id:
        return None  # the file it runs still stands at its path
    try:
        link = os.readlink(f"{paths.procfs}/{pid}/exe")
    except OSError:
        return None  # gone: the sweep reports the exit
    if not link.endswith(" (deleted)"):
        return None
    replaced = proctable.replaced(pid, proc.exe, paths.procfs)
    return dataclasses.replace(proc, exe_deleted=True, exe_replaced=replaced)


def changes(
    procs: Iterable[tuple[int, Proc]], procfs: str = "/proc"
) -> tuple[list[Proc], list[int]]:
    """(processes whose executable or payload was deleted since they were read, with the
    new facts; pids whose leader exited, to check whether a thread still runs)."""
    deleted: list[Proc] = []
    leaderless: list[int] = []
    paths = _Paths(procfs)
    for pid, proc in procs:
        if proc.leader_exited:
            leaderless.append(pid)
            continue
        new = _exe_deleted(pid, proc, paths)
        payload = proc.payload if not proc.payload_deleted else ""
        if new is None and payload.startswith("/") and not paths.file_id(pid, proc, payload):
            new = dataclasses.replace(proc, payload_deleted=True)
        if new is not None:
            deleted.append(new)
    return deleted, leaderless
