"""What changes about a process after it was first read: its executable or payload
deleted (or replaced by an upgrade), its main thread gone while other threads run.

`changes` costs one readlink of /proc/PID/exe per live process, plus one lstat per
distinct loader or interpreter payload (10,000 workers of one script: one lstat);
processes already known deleted, or whose leader exited, are not read again here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

from sentinel.core import launch, proctable
from sentinel.core.model import Proc


def _exe_deleted(pid: int, proc: Proc, procfs: str) -> Proc | None:
    """The process with its new state when its executable was deleted since it was read."""
    if proc.exe_deleted or not proc.exe or proc.exe.startswith("/memfd:"):
        return None
    try:
        link = os.readlink(f"{procfs}/{pid}/exe")
    except OSError:
        return None  # gone: the sweep reports the exit
    if not link.endswith(" (deleted)"):
        return None
    replaced = proctable.replaced(pid, proc.exe, procfs)
    return dataclasses.replace(proc, exe_deleted=True, exe_replaced=replaced)


def changes(
    procs: Iterable[tuple[int, Proc]], procfs: str = "/proc"
) -> tuple[list[Proc], list[int]]:
    """(processes whose executable or payload was deleted since they were read, with the
    new facts; pids whose leader exited, to check whether a thread still runs). A payload
    path is looked up once per cgroup (a container sees its own files)."""
    deleted: list[Proc] = []
    leaderless: list[int] = []
    payload_gone: dict[tuple[str, str], bool] = {}
    for pid, proc in procs:
        if proc.leader_exited:
            leaderless.append(pid)
            continue
        new = _exe_deleted(pid, proc, procfs)
        if new is None and proc.payload.startswith("/") and not proc.payload_deleted:
            key = (proc.cgroup, proc.payload)
            if key not in payload_gone:
                payload_gone[key] = launch.resolve(pid, proc.payload, procfs) == (
                    proc.payload,
                    True,
                )
            if payload_gone[key]:
                new = dataclasses.replace(proc, payload_deleted=True)
        if new is not None:
            deleted.append(new)
    return deleted, leaderless
