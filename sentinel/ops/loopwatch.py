"""How long the event loop's slowest step took, timed by the loop's own selector: the work
between two waits is one step, so measuring it costs two clock reads a step and no wake-up
(a 20 Hz probe task was the idle agent's largest cost)."""

from __future__ import annotations

import asyncio
import selectors
import time
from typing import Any

from sentinel.ops import metrics

SLOW = 0.05  # a step over this is counted as slow


class TimedSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The default selector, timing the loop's work between one wait and the next."""

    def __init__(self) -> None:
        super().__init__()
        self._woke: float | None = None
        self._slowest = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if self._woke is not None:
            step = time.monotonic() - self._woke
            if step > self._slowest:
                self._slowest = step
                metrics.loop_slowest_step.set(step)
            if step > SLOW:
                metrics.loop_slow_steps.inc()
        try:
            return super().select(timeout)
        finally:
            self._woke = time.monotonic()


def new_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose steps are timed (the agent's loop)."""
    return asyncio.SelectorEventLoop(TimedSelector())
