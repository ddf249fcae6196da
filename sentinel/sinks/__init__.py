"""Sinks: one destination per file. A sink only delivers; it never blocks the engine.

To add one, write a module here with a `Sink` subclass decorated by `@register`; every
module here whose name does not start with `_` is discovered. `[[sinks]]` entries pick a
sink by its `type`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sentinel.core.config import SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Finding, Severity
from sentinel.core.plugins import Registry

_registry: Registry[Sink] = Registry(__name__, "type")
register = _registry.register
load_all = _registry.load_all


class Sink:
    """Base class: `submit` queues or writes at once and returns; `resolve` ends an alert."""

    type: ClassVar[str]
    notifies: ClassVar[bool] = True  # False for logs: they get folded findings too

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = cfg.name or self.type
        self.min_severity = Severity.parse(cfg.min_severity)

    @staticmethod
    def record(finding: Finding) -> dict[str, Any]:
        """The finding's alert record, cut to fit in 64 KiB (`truncated: true` when cut)."""
        from sentinel.sinks._cap import capped

        return capped(finding.to_record())

    def wants(self, finding: Finding) -> bool:
        return finding.severity >= self.min_severity

    async def start(self) -> None:
        """Open connections or files; replay anything spooled."""

    def submit(self, finding: Finding) -> None:
        raise NotImplementedError

    def resolve(self, finding: Finding) -> None:
        """The condition behind an earlier finding has ended (default: nothing to do)."""

    def checkpoint(self, record: dict[str, Any]) -> None:
        """A signed alert-log checkpoint to carry off the box (default: not carried)."""

    async def close(self) -> None:
        """Flush what can be flushed quickly; spool the rest."""
