"""Declared jobs ([[runbook.jobs]]) that explain load and long-lived processes.

A job names what argv cannot forge: the executable (a glob on its full path), the user,
and optionally the systemd unit or cgroup it runs in; a `cmdline` regex must match the
whole command line and only narrows a job. A process is explained by a job it matches
itself, or by an ancestor that matches one when it runs the very same executable as that
ancestor (a trainer's DataLoader workers) and meets the job's exe, user, unit and cgroup.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sentinel.core.config import RunbookJob
from sentinel.core.model import Proc
from sentinel.core.proctable import ProcTable

UNIT_SUFFIXES = (".service", ".scope")


def unit_of(cgroup: str) -> str:
    """The systemd unit a cgroup path lies in (its deepest .service or .scope), or ''."""
    return next((p for p in reversed(cgroup.split("/")) if p.endswith(UNIT_SUFFIXES)), "")


@dataclass(frozen=True)
class _Job:
    name: str
    exe: str
    user: str
    unit: str
    cgroup: str
    cmdline: re.Pattern[str] | None
    cpu: bool
    gpu: bool

    def serves(self, kind: str) -> bool:
        """Whether the job explains this kind of load ('cpu', 'gpu'; '' for any)."""
        return {"cpu": self.cpu, "gpu": self.gpu}.get(kind, True)

    def fits(self, p: Proc) -> bool:
        """Exe, user, unit and cgroup: what the kernel says about the process."""
        return (
            bool(p.exe)
            and not p.exe_deleted
            and not p.payload_deleted  # the script an interpreter runs is gone: not the job's
            and fnmatchcase(p.exe, self.exe)
            and p.user == self.user
            and (not self.unit or unit_of(p.cgroup) == self.unit)
            and (not self.cgroup or fnmatchcase(p.cgroup, self.cgroup))
        )

    def matches(self, p: Proc) -> bool:
        if not self.fits(p):
            return False
        if self.cmdline is None:
            return True
        return self.cmdline.fullmatch(shlex.join(p.cmdline) if p.cmdline else p.name) is not None


class Runbook:
    """Matches a process, or an ancestor running the same executable, against the jobs."""

    def __init__(self, jobs: list[RunbookJob]) -> None:
        self.jobs = [
            _Job(
                j.name,
                j.exe,
                j.user,
                j.unit,
                j.cgroup,
                re.compile(j.cmdline) if j.cmdline else None,
                j.cpu,
                j.gpu,
            )
            for j in jobs
        ]

    def explains(self, proc: Proc, table: ProcTable | None = None, kind: str = "") -> str | None:
        """Name of the job that explains this process ('cpu', 'gpu' or '' for any), or None;
        ancestors are looked up among the table's cached processes."""
        lineage = table.cmdline_chain(proc)[1:] if table else []
        return self.explains_in(proc, lineage, kind)

    def explains_in(self, proc: Proc, lineage: Iterable[Proc], kind: str = "") -> str | None:
        """As `explains`, with the process's known ancestors given, nearest first."""
        jobs = [j for j in self.jobs if j.serves(kind) and j.fits(proc)]
        if not jobs:
            return None
        for job in jobs:
            if job.matches(proc):
                return job.name
        for p in lineage:
            if p.exe != proc.exe:
                continue
            for job in jobs:
                if job.matches(p):
                    return job.name
        return None
