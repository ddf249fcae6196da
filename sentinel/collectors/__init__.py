"""Collectors: one source per file. Each observes and emits typed events; none decides.

To add a source, write a module here with a `Collector` subclass decorated by `@register`;
every module here whose name does not start with `_` is discovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

from sentinel.core.context import Context
from sentinel.core.events import CollectorState, Event
from sentinel.core.plugins import Registry
from sentinel.ops import metrics

_registry: Registry[Collector] = Registry(__name__, "name")
register = _registry.register
load_all = _registry.load_all

# queues an event; False when it was dropped (a full queue): the caller should retry
# later. None (a test's list.append) counts as accepted.
Emit = Callable[[Event], bool | None]


class Collector:
    """Base class: `run` loops until cancelled and reports its state through `report`."""

    name: ClassVar[str]

    def __init__(self, ctx: Context, emit: Emit) -> None:
        self.ctx = ctx
        self.emit = emit
        self.ok: bool | None = None
        self.reason = ""

    def enabled(self) -> bool:
        """False when configuration turns this source off entirely."""
        return True

    def report(self, ok: bool, reason: str = "", **detail: object) -> None:
        """Tell the engine this collector runs (ok) or runs degraded (not ok), on change."""
        if ok == self.ok and reason == self.reason:
            return
        self.ok, self.reason = ok, reason
        metrics.collector_up.labels(self.name).set(1 if ok else 0)
        self.emit(
            CollectorState(
                time=time.time(), collector=self.name, ok=ok, reason=reason, detail=dict(detail)
            )
        )

    async def run(self) -> None:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @contextlib.contextmanager
    def measure(self, what: str = "pass") -> Iterator[None]:
        """Time one pass into collector_duration and count its outcome; an error is logged
        and counted, not raised, so one bad read never stops the collector."""
        start = time.perf_counter()
        try:
            yield
        except Exception:
            logging.getLogger(f"sentinel.collectors.{self.name}").exception("%s failed", what)
            metrics.collector_success.labels(self.name, "error").inc()
        else:
            metrics.collector_success.labels(self.name, "ok").inc()
        finally:
            metrics.collector_duration.labels(self.name).observe(time.perf_counter() - start)
