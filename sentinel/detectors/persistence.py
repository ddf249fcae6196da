"""Persistence rules: what was added to cron, units, rc files, keys and the loader config."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from sentinel.core.events import Event, FileChange
from sentinel.core.model import Category, FileFacts, Finding, Severity
from sentinel.detectors import Detector, register
from sentinel.rules import catalogue, intel
from sentinel.rules.fields.persistence import meaningful


@cache
def _builtin() -> catalogue.Catalogue:
    return catalogue.load(intel.load())


def classify(path: str) -> tuple[str, Severity]:
    """The kind of persistence place a path is, and the severity of a plain addition."""
    for m in _builtin().evaluate("persistence", FileChange(0.0, path, "created", "persistence")):
        return m.rule.id.removeprefix("persistence."), m.severity
    return "other", Severity.LOW


@register
class PersistenceDetector(Detector):
    """Reports additions to persistence places, graded by what the added lines run."""

    name = "persistence"
    events = (FileChange,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, FileChange) or event.role != "persistence":
            return
        enabled_unit = ".wants/" in event.path
        if not meaningful(event.added) and not (event.kind in ("created", "moved") or enabled_unit):
            return  # lines removed or rewritten without additions
        for m in self.ctx.catalogue.evaluate("persistence", event):
            yield Finding(
                rule=m.rule.id,
                category=Category.PERSISTENCE,
                severity=m.severity,
                summary=m.summary,
                detector=self.name,
                file=FileFacts(event.path, None, -1),
                evidence=m.evidence,
            )
