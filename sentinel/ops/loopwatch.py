"""How long the event loop's slowest step took: a probe that sleeps PROBE seconds and
measures how late it wakes (a step that holds the loop delays every timer)."""

from __future__ import annotations

import asyncio

from sentinel.ops import metrics

PROBE = 0.05  # seconds between probes: 20 wake-ups a second, a few microseconds each
SLOW = 0.05  # a step over this is counted as slow


async def watch() -> None:
    loop = asyncio.get_running_loop()
    slowest = 0.0
    while True:
        before = loop.time()
        await asyncio.sleep(PROBE)
        lag = loop.time() - before - PROBE
        if lag > slowest:
            slowest = lag
            metrics.loop_slowest_step.set(lag)
        if lag > SLOW:
            metrics.loop_slow_steps.inc()
