"""The agent's loop times its own steps: a step that holds it is measured, waits are not."""

from __future__ import annotations

import asyncio
import time

from sentinel.ops import loopwatch, metrics


def test_a_step_that_holds_the_ready_loop_is_measured_a_wait_is_not() -> None:
    loop = loopwatch.new_loop()
    slow_before = metrics.loop_slow_steps._value.get()
    try:

        async def scenario() -> None:
            time.sleep(0.12)  # start-up work, before the agent is ready: not counted
            await asyncio.sleep(0)
            assert metrics.loop_slow_steps._value.get() == slow_before
            loopwatch.arm()
            await asyncio.sleep(0.3)  # a wait: the loop is idle, not held
            assert metrics.loop_slowest_step._value.get() < 0.3
            time.sleep(0.12)  # a step that holds the loop
            await asyncio.sleep(0)

        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert metrics.loop_slowest_step._value.get() >= 0.12
    assert metrics.loop_slow_steps._value.get() >= slow_before + 1
