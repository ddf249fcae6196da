"""Canary rules: any open, read, change or removal of a canary file, with who did it."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, FileAccess
from sentinel.core.model import Category, FileFacts, Finding, Proc, Severity
from sentinel.detectors import Detector, register

# access kind -> (rule, verb); an open and the read after it are one alert
RULES = {
    "opened": ("canary.read", "read"),
    "read": ("canary.read", "read"),
    "modified": ("canary.modified", "modified"),
    "deleted": ("canary.deleted", "deleted"),
}


@register
class CanaryDetector(Detector):
    """One finding per process that touched a canary (or one for the file when none is known)."""

    name = "canary"
    events = (FileAccess,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, FileAccess):
            return
        rule, verb = RULES.get(event.kind, ("canary.read", "read"))
        facts = FileFacts(event.path, None, -1)
        evidence = {"access": event.kind, "pids": list(event.pids)}
        readers: list[Proc | None] = list(event.procs) or [None]
        for proc in readers:
            who = f"{proc.name} (pid {proc.pid})" if proc else "an unknown process"
            yield Finding(
                rule=rule,
                category=Category.CANARY,
                severity=Severity.HIGH,
                summary=f"canary {event.path} {verb} by {who}",
                detector=self.name,
                process=proc,
                file=facts,
                evidence=evidence,
                # one alert per reader; with no reader known, one per file (the default)
                subject=f"{event.path}|pid:{proc.pid}:{proc.start_time:.2f}" if proc else "",
            )
