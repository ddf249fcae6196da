"""Process rules on each new process: the catalogue's process rules and its text rules
over the command line (and base64 texts hidden in it)."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, ProcExec
from sentinel.core.model import Finding, Proc
from sentinel.detectors import Detector, register
from sentinel.rules.catalogue import Match
from sentinel.rules.fields import text


@register
class ProcessDetector(Detector):
    """Rules on the facts of one process, evaluated once when it is first seen."""

    name = "process"
    events = (ProcExec,)
    threadable = True

    def handle(self, event: Event) -> Iterable[Finding]:
        if isinstance(event, ProcExec):
            yield from self.check(event.proc)

    def check(self, proc: Proc) -> list[Finding]:
        """At most one finding per rule, the most severe, for this process."""
        best: dict[str, Match] = {}
        for m in self.matches(proc):
            rid = m.rule.id
            if rid not in best or m.severity > best[rid].severity:
                best[rid] = m
        return [
            Finding(
                rule=m.rule.id,
                category=m.rule.category,
                severity=m.severity,
                summary=f"{m.summary}: {proc.name} (pid {proc.pid})",
                detector=self.name,
                process=proc,
                evidence=m.evidence,
            )
            for m in best.values()
        ]

    def matches(self, proc: Proc) -> list[Match]:
        if not proc.exe and not proc.cmdline:
            return []  # a kernel thread, or a zombie whose image is gone: nothing to judge
        cat = self.ctx.catalogue
        found = cat.evaluate("process", proc)
        line = " ".join(proc.cmdline)
        if line:
            found.extend(text.matches(cat, line))
        return found
