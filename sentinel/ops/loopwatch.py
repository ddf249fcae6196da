"""How long the event loop's slowest step took, timed by the loop's own selector: the work
between two waits is one step, so measuring it costs two clock reads a step and no wake-up
(a 20 Hz probe task was the idle agent's largest cost). Steps count once the agent is
ready (`arm`): start-up work (imports, log recovery) is not a stall."""

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
        self.armed = False
        self._woke: float | None = None
        self._slowest = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if self.armed and self._woke is not None:
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


_timed: list[TimedSelector] = []  # the selector of the loop new_loop made last


def new_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose steps are timed once `arm` is called (the agent's loop)."""
    _timed[:] = [TimedSelector()]
    return asyncio.SelectorEventLoop(_timed[0])


def arm() -> None:
    """Count the steps from now on (no-op on a loop new_loop did not make)."""
    for sel in _timed:
        sel.armed = True
