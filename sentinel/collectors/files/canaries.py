"""Canaries: opens, reads and writes of decoy secrets, with the pid that did them."""

from __future__ import annotations

import logging
import os
import stat
import time
from typing import TYPE_CHECKING

from sentinel.collectors.files.budget import WatchLimit
from sentinel.collectors.files.drops import DIR_MASK
from sentinel.collectors.files.fsnotify import (
    FAN_ACCESS,
    FAN_CLOSE_WRITE,
    FAN_MODIFY,
    FAN_OPEN,
    IN_ACCESS,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DONT_FOLLOW,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_OPEN,
    Fanotify,
    Inotify,
    InotifyEvent,
)
from sentinel.core import fdowners
from sentinel.core.events import FileAccess
from sentinel.ops import metrics

if TYPE_CHECKING:
    from sentinel.collectors.files.collector import FilesCollector

log = logging.getLogger(__name__)

CANARY_GAP = 1.0  # the same access to a canary by the same process is reported once a second
CANARY_DIR_MASK = DIR_MASK | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM
CANARY_FILE_MASK = IN_DONT_FOLLOW | IN_OPEN | IN_ACCESS | IN_MODIFY | IN_CLOSE_WRITE
FAN_MASK = FAN_OPEN | FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE


class Canaries:
    """Marks each canary file (fanotify, or inotify without the pid) and its directory."""

    def __init__(self, files: FilesCollector) -> None:
        self.files = files
        self.paths = {os.path.realpath(p) for p in files.ctx.config.canaries.paths}
        self.own_pid = os.getpid()
        self.watcher: Inotify | None = None
        self.fan: Fanotify | None = None
        self.seen: dict[tuple[str, str, int], float] = {}

    def setup(self) -> None:
        if not self.paths:
            return
        try:
            self.fan = Fanotify(self.on_fanotify, self.files.overflowed("canary"))
        except OSError as exc:
            self.files.problems["canary"] = (
                f"fanotify unavailable ({exc.strerror}): canary opens seen by inotify, "
                "without the reader's pid"
            )
        assert self.watcher is not None
        for path in sorted(self.paths):
            try:
                self.files.budget.add(self.watcher, os.path.dirname(path), CANARY_DIR_MASK)
                self.arm(path)
            except WatchLimit:
                self.files.limit_reached(
                    "canary",
                    f"watch limit reached ({self.files.budget.describe()}): "
                    "some canaries are not watched",
                )
                return

    def arm(self, path: str) -> None:
        """Mark the canary file itself for opens and reads (again after it was replaced)."""
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            regular = False
        if not regular:  # gone, or replaced by a link: nothing beyond it is armed
            log.warning("canary %s is not a regular file; watching for its creation", path)
            return
        try:
            if self.fan is not None:
                self.fan.mark(path, FAN_MASK)
            else:
                assert self.watcher is not None
                self.files.budget.add(self.watcher, path, CANARY_FILE_MASK)
        except OSError as exc:
            log.warning("cannot watch canary %s: %s", path, exc.strerror)

    def on_fanotify(self, path: str, mask: int, pid: int) -> None:
        if pid == self.own_pid:
            return
        if mask & (FAN_MODIFY | FAN_CLOSE_WRITE):
            kind = "modified"
        elif mask & FAN_ACCESS:
            kind = "read"
        else:
            kind = "opened"
        try:
            self.access(path, kind, pid)
        except Exception:
            log.exception("canary event on %s failed", path)
            metrics.errors.labels("collector.files").inc()

    def on_inotify(self, ev: InotifyEvent) -> None:
        path = ev.path
        if path not in self.paths:
            return
        if not ev.name:  # the file itself (inotify fallback): who holds it open, if anyone
            if ev.mask & (IN_MODIFY | IN_CLOSE_WRITE):
                kind = "modified"
            elif ev.mask & IN_ACCESS:
                kind = "read"
            else:
                kind = "opened"
            if self.recent(path, kind, 0):
                return
            fdowners.holders_then(
                path,
                self.files.ctx.procfs,
                self.own_pid,
                lambda pids: self.emit_access(path, kind, pids),
            )
        elif ev.mask & (IN_DELETE | IN_MOVED_FROM):
            self.access(path, "deleted", 0)
        elif ev.mask & (IN_CREATE | IN_MOVED_TO):
            self.arm(path)
            self.access(path, "modified", 0)

    def recent(self, path: str, kind: str, pid: int) -> bool:
        """True if this access was reported within CANARY_GAP (and notes it otherwise)."""
        now = time.monotonic()
        key = (path, kind, pid)
        if now - self.seen.get(key, -CANARY_GAP) < CANARY_GAP:
            return True
        if len(self.seen) > 4096:
            self.seen = {k: t for k, t in self.seen.items() if now - t < CANARY_GAP}
        self.seen[key] = now
        return False

    def access(self, path: str, kind: str, pid: int) -> None:
        if not self.recent(path, kind, pid):
            self.emit_access(path, kind, [pid] if pid else [])

    def emit_access(self, path: str, kind: str, pids: list[int]) -> None:
        procs = [p for p in map(self.files.ctx.procs.get, pids) if p is not None]
        self.files.emit(FileAccess(time=time.time(), path=path, kind=kind, pids=pids, procs=procs))
