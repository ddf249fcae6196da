"""Files: drops in the watched trees, additions to persistence places, canary opens and reads.

inotify and fanotify are read on the event loop (`fsnotify` beside this module), one fd
each and no threads. The three parts (`drops`, `persistence`, `canaries`) share one watch
budget (`budget`): canaries first, then persistence, then drops, so when it runs out the
drop watch is a shallower one, reported and counted. Symbolic links are never followed
below a root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sentinel.collectors import Collector, Emit, register
from sentinel.collectors.files.budget import WatchBudget
from sentinel.collectors.files.canaries import Canaries
from sentinel.collectors.files.drops import Drops
from sentinel.collectors.files.fsnotify import Inotify, InotifyEvent
from sentinel.collectors.files.persistence import Persistence
from sentinel.core.context import Context
from sentinel.ops import metrics

log = logging.getLogger(__name__)

QUIET = 0.3  # a file still being written is reported once it has been quiet this long
MIN_GAP = 1.0  # at most one event per path and role per second
TICK = 0.1
RECOVER_EVERY = 2.0  # seconds between checks whether freed watches let drops go deeper
MAX_PENDING = 50000
MAX_REFUSED = 8  # symlinked places named in the collector's state


@dataclass(slots=True)
class Pending:
    kind: str
    last: float
    closed: bool


@register
class FilesCollector(Collector):
    """Emits FileChange (role drop or persistence) and FileAccess (canaries)."""

    name = "files"
    state_name = "files"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.budget = WatchBudget(ctx.config.watch.max_watches)
        self.canaries = Canaries(self)
        self.drops = Drops(self)
        self.persistence = Persistence(self)
        self.pending: dict[tuple[str, str], Pending] = {}  # (path, role)
        self.emitted: dict[tuple[str, str], float] = {}
        self.wake = asyncio.Event()
        self.problems: dict[str, str] = {}
        self.recovering: asyncio.Task[None] | None = None

    # lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.drops.watcher = Inotify(
                self.guarded(self.drops.on_event), self.overflowed("drops")
            )
            self.persistence.watcher = Inotify(
                self.guarded(self.persistence.on_event), self.persistence.on_overflow
            )
            self.canaries.watcher = Inotify(
                self.guarded(self.canaries.on_inotify), self.overflowed("canary")
            )
        except OSError as exc:
            self.close()
            self.report(False, f"inotify unavailable ({exc.strerror}): no file events")
            await asyncio.Event().wait()
        watchers = [self.drops.watcher, self.persistence.watcher, self.canaries.watcher]
        self.budget.watchers = watchers
        try:
            with self.measure("setup"):
                await loop.run_in_executor(None, self.setup)
            self.persistence.saved = None  # compared at setup; later changes come as events
            self.persistence.ready = True
            for ino in watchers:
                ino.start(loop)
            if self.canaries.fan is not None:
                self.canaries.fan.start(loop)
            self.report_state()
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RECOVER_EVERY):
                        await self.wake.wait()
                if (self.recovering is None or self.recovering.done()) and self.drops.can_recover():
                    self.recovering = asyncio.create_task(self.recover())
                if not self.wake.is_set():
                    continue
                await asyncio.sleep(TICK)
                with self.measure("flush"):
                    self.flush(time.monotonic())
                if not self.pending:
                    self.wake.clear()
        finally:
            self.close()

    def load_state(self, data: bytes | None) -> None:
        self.persistence.load(data)

    def save_state(self) -> Callable[[], bytes] | None:
        return self.persistence.dump()

    async def recover(self) -> None:
        with self.measure("recover"):
            await self.drops.recover()

    def close(self) -> None:
        if self.recovering is not None:
            self.recovering.cancel()
        for part in (self.drops, self.persistence, self.canaries):
            if part.watcher is not None:
                part.watcher.close()
            part.watcher = None
        if self.canaries.fan is not None:
            self.canaries.fan.close()
            self.canaries.fan = None
        self.budget.watchers = []

    def setup(self) -> None:
        """Canaries first, then persistence, then drops: the budget goes to the most telling."""
        self.canaries.setup()
        self.persistence.setup()
        self.drops.setup()
        denied = self.budget.denied
        if denied:
            self.problems["denied"] = (
                f"{denied} director{'y' if denied == 1 else 'ies'} cannot be watched "
                "(permission denied)"
            )

    def guarded(self, handler: Callable[[InotifyEvent], None]) -> Callable[[InotifyEvent], None]:
        def run(ev: InotifyEvent) -> None:
            try:
                handler(ev)
            except Exception:
                log.exception("file event %s failed", ev)
                metrics.errors.labels("collector.files").inc()

        return run

    def overflowed(self, what: str) -> Callable[[], None]:
        def count() -> None:
            log.warning("%s: the kernel's event queue overflowed; events were lost", what)
            metrics.events_dropped.labels(f"files.{what}").inc()

        return count

    def report_state(self) -> None:
        """Report the problems; a spent budget (something unwatched) is at least medium."""
        if not self.problems:
            self.report(True)
            return
        spent = any(key.startswith(("limit:", "refused:")) for key in self.problems)
        self.report(
            False,
            "; ".join(self.problems.values()),
            watches=self.budget.used(),
            severity="medium" if spent else "low",
        )

    def limit_reached(self, what: str, reason: str) -> None:
        """Count every hit of the watch limit; say it once per part."""
        metrics.errors.labels("files.watch_limit").inc()
        key = f"limit:{what}"
        if key in self.problems:
            return
        log.warning("files: %s", reason)
        self.problems[key] = reason
        self.report_state()

    def refused(self, path: str, why: str) -> None:
        """A watched place in a home reached through a symlink: not followed, not read, said
        once per path (MAX_REFUSED paths at most; the metric counts all)."""
        metrics.errors.labels("files.symlink_refused").inc()
        key = f"refused:{path}"
        if key in self.problems or sum(k.startswith("refused:") for k in self.problems) >= (
            MAX_REFUSED
        ):
            return
        log.warning("files: %s: %s; not followed", path, why)
        self.problems[key] = f"{path}: {why}; not followed, not read"
        self.report_state()

    # debounce: one event per file once it is closed or quiet, at most one per MIN_GAP
    def touch(self, path: str, role: str, kind: str, closed: bool) -> None:
        key = (path, role)
        p = self.pending.get(key)
        if p is None:
            if len(self.pending) >= MAX_PENDING:
                metrics.events_dropped.labels("files.pending").inc()
                return
            self.pending[key] = Pending(kind, time.monotonic(), closed)
        else:
            if p.kind == "modified":
                p.kind = kind
            p.last, p.closed = time.monotonic(), closed
        self.wake.set()

    def flush(self, now: float) -> None:
        for key, p in list(self.pending.items()):
            if not p.closed and now - p.last < QUIET:
                continue
            if now - self.emitted.get(key, -MIN_GAP) < MIN_GAP:
                continue
            del self.pending[key]
            self.emitted[key] = now
            path, role = key
            try:
                if role == "drop":
                    self.drops.deliver(path, p.kind)
                else:
                    self.persistence.deliver(path, p.kind)
            except Exception:
                log.exception("file change %s failed", path)
                metrics.errors.labels("collector.files").inc()
        if len(self.emitted) > 4096:
            self.emitted = {k: t for k, t in self.emitted.items() if now - t < MIN_GAP}
