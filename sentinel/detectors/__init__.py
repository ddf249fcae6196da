"""Detectors: one per file. Pure logic: events in, findings out, no I/O of their own.

To add one, write a module here with a `Detector` subclass decorated by `@register`;
every module here whose name does not start with `_` is discovered.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from sentinel.core.context import Context
from sentinel.core.events import Event
from sentinel.core.model import Finding
from sentinel.core.plugins import Registry

_registry: Registry[Detector] = Registry(__name__, "name")
register = _registry.register
load_all = _registry.load_all


class Detector:
    """Base class. `events` lists the event types handled; `blocking` runs it off the loop."""

    name: ClassVar[str]
    events: ClassVar[tuple[type[Event], ...]] = ()
    blocking: ClassVar[bool] = False
    # keeps no state of its own: the engine may run it on a worker thread for an event
    # that is costly to judge (a huge command line), so the loop keeps ticking
    threadable: ClassVar[bool] = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def accepts(self, event: Event) -> bool:
        """Cheap check on the event loop before a blocking detector's event is queued, so a
        flood of uninteresting events cannot crowd out the one that matters."""
        return True

    def handle(self, event: Event) -> Iterable[Finding]:
        raise NotImplementedError
