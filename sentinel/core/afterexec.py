"""What changes about a process after it was first read: its executable or payload
deleted (or replaced by an upgrade), its main thread gone while other threads run.

`changes` costs one readlink of /proc/PID/exe per live process, plus one lstat for each
loader or interpreter payload still on disk; processes already known deleted, or whose
leader exited, are not read again here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from sentinel.core import launch, proctable
from sentinel.core.model import Proc


def _deleted(pid: int, proc: Proc, procfs: str) -> Proc | None:
    """The process with its new state when its executable or payload is gone."""
    if not proc.exe_deleted and proc.exe and not proc.exe.startswith("/memfd:"):
        try:
            link = os.readlink(f"{procfs}/{pid}/exe")
        except OSError:
            return None  # gone: the sweep reports the exit
        if link.endswith(" (deleted)"):
            return dataclasses.replace(
                proc, exe_deleted=True, exe_replaced=proctable.replaced(pid, proc.exe, procfs)
            )
    if proc.payload.startswith("/") and not proc.payload_deleted:
        where, gone = launch.resolve(pid, proc.payload, procfs)
        if gone and where == proc.payload:
            return dataclasses.replace(proc, payload_deleted=True)
    return None


def changes(known: Mapping[int, Proc], procfs: str = "/proc") -> tuple[list[Proc], list[int]]:
    """(processes whose executable or payload was deleted since they were read, with the
    new facts; pids whose leader exited, to check whether a thread still runs)."""
    deleted: list[Proc] = []
    leaderless: list[int] = []
    for pid, proc in known.items():
        if proc.leader_exited:
            leaderless.append(pid)
            continue
        new = _deleted(pid, proc, procfs)
        if new is not None:
            deleted.append(new)
    return deleted, leaderless
