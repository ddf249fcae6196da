"""The engine's side: decide on each published finding, run the sequence off the loop."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sentinel.core.config import Config
from sentinel.core.model import Finding
from sentinel.ops import metrics
from sentinel.response.policy import Policy
from sentinel.response.sequence import Sequence, Step, record
from sentinel.response.targets import Identity

log = logging.getLogger("sentinel.response")
HISTORY = 500  # recent alert records kept for the forensics bundle
CONTAINED = 4096  # identities remembered as contained (oldest forgotten first)


class Responder:
    """Never blocks the event loop (the steps run in one worker thread) and never raises."""

    def __init__(
        self,
        config: Callable[[], Config],
        publish: Callable[[Finding], Any],
        flush: Callable[[float], object] | None = None,
    ) -> None:
        self.config = config
        self.publish = publish
        self.flush = flush  # the flight recorder's, for the forensics timeline
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-response")
        self.tasks: set[asyncio.Task[None]] = set()
        # ordered set of (dry-run, identity); an exec makes a new identity
        self.contained: dict[tuple[bool, Identity], None] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    def consider(self, finding: Finding) -> None:
        """Called on the loop after a finding went to the sinks."""
        cfg = self.config()
        if cfg.response.mode == "off":
            return
        try:
            if not finding.rule.startswith("response."):
                self.history.append(finding.to_record())
            plan = Policy(cfg.response).decide(finding)
            if plan is None:
                return
            keys = {(plan.dry_run, root) for root in plan.roots}  # dry-run does not count
            if keys and keys <= self.contained.keys():
                return  # this tree is being or was contained already
            self.contained.update(dict.fromkeys(keys))
            while len(self.contained) > CONTAINED:
                del self.contained[next(iter(self.contained))]
            plan.records = list(self.history)
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._run(cfg, plan, loop), name=f"response:{plan.incident}")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        except Exception:
            log.exception("response policy failed on %s", finding.rule)
            metrics.errors.labels("response").inc()

    async def _run(self, cfg: Config, plan: Any, loop: asyncio.AbstractEventLoop) -> None:
        def on_step(step: Step) -> None:
            loop.call_soon_threadsafe(self._emit, record(step, plan))

        try:
            sequence = Sequence(cfg, on_step=on_step, flush=self.flush)
            await loop.run_in_executor(self.pool, sequence.run, plan)
        except Exception:
            log.exception("response sequence failed for incident %s", plan.incident)
            metrics.errors.labels("response").inc()

    def _emit(self, finding: Finding) -> None:
        try:
            self.publish(finding)
        except Exception:
            log.exception("publishing %s failed", finding.rule)
            metrics.errors.labels("response").inc()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
