"""Persistence rules: what was added to cron, units, rc files, keys and the loader config."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, FileChange
from sentinel.core.model import FileFacts, Finding
from sentinel.detectors import Detector, register
from sentinel.rules.fields.persistence import meaningful


@register
class PersistenceDetector(Detector):
    """Reports additions to persistence places, graded by what the added lines run."""

    name = "persistence"
    events = (FileChange,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, FileChange) or event.role != "persistence":
            return
        quiet = not (meaningful(event.added) or event.partial or event.kind in ("created", "moved"))
        for m in self.ctx.catalogue.evaluate("persistence", event):
            enabled_unit = m.evidence.get("kind") == "systemd" and ".wants/" in event.path
            if quiet and not enabled_unit:
                return  # lines removed or rewritten without additions
            yield Finding(
                rule=m.rule.id,
                category=m.rule.category,
                severity=m.severity,
                summary=m.summary,
                detector=self.name,
                file=FileFacts(event.path, event.sha256, event.size),
                evidence=m.evidence,
            )
