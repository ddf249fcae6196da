"""Drops: files written into the watched trees, watched breadth first to `watch.max_depth`."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections import deque
from typing import TYPE_CHECKING

from sentinel.collectors.files.budget import WatchLimit, regular_files, subdirs
from sentinel.collectors.files.fsnotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DONT_FOLLOW,
    IN_EXCL_UNLINK,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    Inotify,
    InotifyEvent,
)
from sentinel.core.events import FileChange
from sentinel.core.paths import under

if TYPE_CHECKING:
    from sentinel.collectors.files.collector import FilesCollector

log = logging.getLogger(__name__)

RECOVER_STEP = 256  # directories walked per step of the event loop when watching deeper again
MAX_DIR_FILES = 1000  # files reported from a directory that arrived whole (mkdir+cp, mv, untar)
DIR_MASK = IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
DROP_MASK = DIR_MASK | IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM
DROP_MASK |= IN_ATTRIB


class Drops:
    """Watches the drop roots; when the budget runs out the watch is a shallower one."""

    def __init__(self, files: FilesCollector) -> None:
        cfg = files.ctx.config
        self.files = files
        self.max_depth = cfg.watch.max_depth
        self.depth = cfg.watch.max_depth
        self.roots = sorted(
            {os.path.realpath(p) for p in cfg.watch.paths if os.path.isdir(p)}, key=len
        )
        state_dir = os.path.realpath(cfg.agent.state_dir)
        # the agent's own state is never a drop, unless it is (above) a whole watched root
        self.own_dirs = [] if any(under(r, state_dir) for r in self.roots) else [state_dir]
        self.own_log = os.path.realpath(cfg.alert_log)
        self.watcher: Inotify | None = None
        self.spent_at = 0  # watches in use when the budget last ran out

    def setup(self) -> None:
        self.watch_tree(deque((r, 0) for r in self.roots))

    def own(self, path: str) -> bool:
        return path.startswith(self.own_log) or any(under(path, d) for d in self.own_dirs)

    def depth_of(self, path: str) -> int:
        """Levels below the deepest watched root that holds the path."""
        root = max((r for r in self.roots if under(path, r)), key=len, default=path)
        return path[len(root) :].count("/")

    def watch_tree(self, queue: deque[tuple[str, int]], steps: int | None = None) -> list[str]:
        """Watch directories breadth first (shallow levels first) down to the drop depth,
        going through the ones already watched; at most `steps` of them (the rest stay queued)."""
        assert self.watcher is not None
        added = []
        while queue and (steps is None or steps > 0):
            if steps is not None:
                steps -= 1
            path, depth = queue.popleft()
            if depth > self.depth or self.own(path):
                continue
            if not self.watcher.watching(path):
                try:
                    if not self.files.budget.add(self.watcher, path, DROP_MASK):
                        continue
                except WatchLimit:
                    self.limit_reached(depth)
                    break
                added.append(path)
            if depth < self.depth:
                queue.extend((d, depth + 1) for d in subdirs(path))
        return added

    def can_recover(self) -> bool:
        """Shallower than configured, and a twentieth of the budget freed since it ran out."""
        budget = self.files.budget
        margin = max(1, budget.limit // 20)
        return self.depth < self.max_depth and budget.used() + margin <= self.spent_at

    async def recover(self) -> None:
        """Watch to the full depth again, a slice of the tree per step of the event loop;
        if the budget runs out again the watch shrinks again and says so."""
        log.info(
            "files: watches freed (%s); watching drops deeper again", self.files.budget.describe()
        )
        self.depth = self.max_depth
        self.files.problems.pop("limit:drops", None)
        queue = deque((r, 0) for r in self.roots)
        while queue and self.depth == self.max_depth:
            self.watch_tree(queue, RECOVER_STEP)
            await asyncio.sleep(0)
        if self.depth == self.max_depth:
            log.info("files: drops watched to depth %d again", self.depth)
        self.files.report_state()

    def limit_reached(self, depth: int) -> None:
        """Shrink to the depth fully watched, and say so."""
        self.spent_at = self.files.budget.used()
        self.depth = min(self.depth, max(depth - 1, 0))
        self.files.limit_reached(
            "drops",
            f"watch limit reached ({self.files.budget.describe()}): drops watched "
            f"to depth {self.depth} instead of {self.max_depth}",
        )

    def on_event(self, ev: InotifyEvent) -> None:
        assert self.watcher is not None
        path = ev.path
        if self.own(path) or path in self.files.canaries.paths:
            return
        if ev.mask & IN_ISDIR:
            if ev.mask & IN_MOVED_FROM:
                self.watcher.remove_tree(path)
            elif ev.mask & (IN_CREATE | IN_MOVED_TO):
                kind = "moved" if ev.mask & IN_MOVED_TO else "created"
                for d in self.watch_tree(deque([(path, self.depth_of(path))])):
                    for f in regular_files(d, MAX_DIR_FILES):
                        self.files.touch(f, "drop", kind, closed=True)
            return
        if ev.mask & IN_MOVED_FROM:
            self.files.pending.pop((path, "drop"), None)
        elif ev.mask & IN_MOVED_TO:
            self.files.touch(path, "drop", "moved", closed=True)
        elif ev.mask & (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE):
            kind = "created" if ev.mask & IN_CREATE else "modified"
            self.files.touch(path, "drop", kind, closed=bool(ev.mask & IN_CLOSE_WRITE))
        elif ev.mask & IN_ATTRIB and self.executable(path):  # chmod +x after the write
            self.files.touch(path, "drop", "modified", closed=True)

    @staticmethod
    def executable(path: str) -> bool:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    def deliver(self, path: str, kind: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return  # gone already
        if stat.S_ISREG(st.st_mode):
            self.files.emit(FileChange(time=time.time(), path=path, kind=kind, role="drop"))
