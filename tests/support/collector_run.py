"""Drive one collector directly: run it as an asyncio task, keep what it emits, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from sentinel.collectors import Collector
from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.events import CollectorState, Event
from sentinel.rules import intel

E = TypeVar("E", bound=Event)


class Running:
    """`async with Running(Cls, cfg) as run:` starts the collector and waits for its first
    state report; `run.events` is what it emitted (list.append is its emit)."""

    def __init__(self, cls: type[Collector], cfg: config.Config, procfs: str = "/proc"):
        self.events: list[Event] = []
        self.collector = cls(Context(cfg, intel.load(), procfs), self.events.append)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.collector.run())
        await self.wait(CollectorState, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def of(self, etype: type[E], pred: Callable[[E], bool] = lambda e: True) -> list[E]:
        return [e for e in list(self.events) if isinstance(e, etype) and pred(e)]

    async def wait(
        self, etype: type[E], pred: Callable[[E], bool] = lambda e: True, timeout: float = 3.0
    ) -> E:
        """The first event of this type that matches, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(etype, pred)
            if found:
                return found[0]
            if self.task is not None and self.task.done():
                self.task.result()  # surface a crash
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching {etype.__name__} within {timeout}s")
            await asyncio.sleep(0.01)

    def state(self) -> CollectorState:
        return self.of(CollectorState)[-1]
