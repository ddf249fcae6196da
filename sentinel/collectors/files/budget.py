"""The one inotify watch budget that drops, persistence places and canaries share."""

from __future__ import annotations

import errno
import logging

from sentinel.collectors.files.fsnotify import Inotify
from sentinel.core import safeopen

log = logging.getLogger(__name__)

SKIP_DIRS = frozenset({"/proc", "/sys"})


class WatchLimit(Exception):
    """The watch budget or the kernel's inotify watch limit is spent."""


def kernel_watch_limit() -> int:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 8192


def subdirs(path: str) -> list[str]:
    """Real subdirectories (no symlinks) of a directory; [] if it cannot be read."""
    return [d for d in safeopen.listing(path, 0)[0] if d not in SKIP_DIRS]


def regular_files(path: str, limit: int) -> list[str]:
    return safeopen.listing(path, limit)[1]


class WatchBudget:
    """Counts the watches of every inotify instance against `watch.max_watches`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.watchers: list[Inotify] = []
        self.denied = 0  # directories that could not be watched for lack of permission

    def used(self) -> int:
        return sum(len(w) for w in self.watchers)

    def add(self, watcher: Inotify, path: str, mask: int) -> bool:
        """Watch a directory; False if it cannot be (gone, denied), WatchLimit when spent."""
        if self.used() >= self.limit:
            raise WatchLimit
        try:
            watcher.add(path, mask)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise WatchLimit from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                self.denied += 1
            log.debug("not watching %s: %s", path, exc.strerror)
            return False
        return True

    def describe(self) -> str:
        """How many watches are used and what the limits are, for a report."""
        return (
            f"{self.used()} watches; watch.max_watches={self.limit}, "
            f"fs.inotify.max_user_watches={kernel_watch_limit()}"
        )
