"""Sinks: one destination per file. A sink only delivers; it never blocks the engine.

To add one, write a module here with a `Sink` subclass decorated by `@register` and add
its module name to `MODULES`; `[[sinks]]` entries pick it by its `type`.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

from sentinel.config import SinkConfig
from sentinel.context import Context
from sentinel.model import Finding, Severity

MODULES = ["jsonl", "stdout", "webhook", "slack", "discord", "teams", "alertmanager"]

REGISTRY: dict[str, type[Sink]] = {}


def register(cls: type[Sink]) -> type[Sink]:
    REGISTRY[cls.type] = cls
    return cls


def load_all() -> dict[str, type[Sink]]:
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return REGISTRY


class Sink:
    """Base class: `submit` queues or writes at once and returns; `resolve` ends an alert."""

    type: ClassVar[str]

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = cfg.name or self.type
        self.min_severity = Severity.parse(cfg.min_severity)

    def wants(self, finding: Finding) -> bool:
        return finding.severity >= self.min_severity

    async def start(self) -> None:
        """Open connections or files; replay anything spooled."""

    def submit(self, finding: Finding) -> None:
        raise NotImplementedError

    def resolve(self, finding: Finding) -> None:
        """The condition behind an earlier finding has ended (default: nothing to do)."""

    async def close(self) -> None:
        """Flush what can be flushed quickly; spool the rest."""
