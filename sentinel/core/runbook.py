"""Declared jobs ([[runbook.jobs]]) that explain load and long-lived processes."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from sentinel.core.config import RunbookJob
from sentinel.core.model import Proc
from sentinel.core.proctable import ProcTable


@dataclass(frozen=True)
class _Job:
    name: str
    pattern: re.Pattern[str]
    user: str
    cpu: bool
    gpu: bool


class Runbook:
    """Matches a process or any of its ancestors against the declared jobs."""

    def __init__(self, jobs: list[RunbookJob]) -> None:
        self.jobs = [_Job(j.name, re.compile(j.cmdline), j.user, j.cpu, j.gpu) for j in jobs]

    def explains(self, proc: Proc, table: ProcTable | None = None, kind: str = "") -> str | None:
        """Name of the job that explains this process ('cpu', 'gpu' or '' for any), or None."""
        if not self.jobs:
            return None
        chain = table.cmdline_chain(proc) if table else [proc]
        for p in chain:
            text = shlex.join(p.cmdline) if p.cmdline else p.name
            for job in self.jobs:
                if (kind == "cpu" and not job.cpu) or (kind == "gpu" and not job.gpu):
                    continue
                if job.user and job.user != p.user:
                    continue
                if job.pattern.search(text):
                    return job.name
        return None
