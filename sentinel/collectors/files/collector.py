"""Files: drops in the watched trees, additions to persistence places, canary opens and reads.

inotify and fanotify are read on the event loop (`fsnotify` beside this module), one fd
each and no threads. Drops are watched breadth first down to `watch.max_depth`, so when
the watch budget (`watch.max_watches` or the kernel's fs.inotify.max_user_watches) runs
out the watch is a shallower one, reported and counted. Symbolic links are never followed
below a root.
"""

from __future__ import annotations

import asyncio
import errno
import glob
import logging
import os
import stat
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sentinel.collectors import Collector, Emit, register
from sentinel.collectors.files.fsnotify import (
    FAN_ACCESS,
    FAN_CLOSE_WRITE,
    FAN_MODIFY,
    FAN_OPEN,
    IN_ACCESS,
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DONT_FOLLOW,
    IN_EXCL_UNLINK,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_OPEN,
    Fanotify,
    Inotify,
    InotifyEvent,
)
from sentinel.core import fdowners
from sentinel.core.context import Context
from sentinel.core.events import FileAccess, FileChange
from sentinel.core.paths import under
from sentinel.ops import metrics

log = logging.getLogger(__name__)

QUIET = 0.3  # a file still being written is reported once it has been quiet this long
MIN_GAP = 1.0  # at most one event per path and role per second
TICK = 0.1
MAX_PENDING = 50000
SNAPSHOT_CAP = 256 * 1024  # bytes of each persistence file kept to diff against
MAX_ADDED = 1000  # added lines carried by one event
PERSIST_DEPTH = 2  # subdirectories of a persistence dir watched (unit .wants/, crontabs/)
MAX_DIR_FILES = 1000  # files reported from a directory that arrived whole (mkdir+cp, mv, untar)
SKIP_DIRS = frozenset({"/proc", "/sys"})
CANARY_GAP = 1.0  # the same access to a canary by the same process is reported once a second

DIR_MASK = IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
DROP_MASK = DIR_MASK | IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM
DROP_MASK |= IN_ATTRIB
PERSIST_MASK = DIR_MASK | IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM
PERSIST_MASK |= IN_DELETE
CANARY_DIR_MASK = DIR_MASK | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM
CANARY_FILE_MASK = IN_DONT_FOLLOW | IN_OPEN | IN_ACCESS | IN_MODIFY | IN_CLOSE_WRITE
FAN_MASK = FAN_OPEN | FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE


class WatchLimit(Exception):
    """The watch budget or the kernel's inotify watch limit is spent."""


@dataclass(slots=True)
class Pending:
    kind: str
    last: float
    closed: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    ident: tuple[int, int, int]  # inode, size, mtime_ns
    lines: tuple[str, ...]


@dataclass(slots=True)
class Place:
    """A watched persistence directory: all of it (to `depth` more levels) or some names."""

    depth: int | None = None
    names: set[str] = field(default_factory=set)


def subdirs(path: str) -> list[str]:
    """Real subdirectories (no symlinks) of a directory; [] if it cannot be read."""
    try:
        with os.scandir(path) as it:
            return [
                e.path for e in it if e.is_dir(follow_symlinks=False) and e.path not in SKIP_DIRS
            ]
    except OSError:
        return []


def regular_files(path: str, limit: int) -> list[str]:
    try:
        with os.scandir(path) as it:
            out = []
            for e in it:
                if e.is_file(follow_symlinks=False):
                    out.append(e.path)
                    if len(out) >= limit:
                        break
            return out
    except OSError:
        return []


def read_lines(path: str) -> tuple[os.stat_result, tuple[str, ...]]:
    """The first SNAPSHOT_CAP bytes of a regular file as lines, never following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return st, ()
        data = os.read(fd, SNAPSHOT_CAP)
    finally:
        os.close(fd)
    return st, tuple(data.decode("utf-8", "replace").splitlines())


def added_lines(old: Iterable[str], new: Iterable[str]) -> list[str]:
    """Lines of `new` that `old` did not have (as a multiset: a repeated line counts)."""
    have = Counter(old)
    out = []
    for line in new:
        if have[line] > 0:
            have[line] -= 1
        else:
            out.append(line)
    return out


def ident(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def kernel_watch_limit() -> int:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 8192


@register
class FilesCollector(Collector):
    """Emits FileChange (role drop or persistence) and FileAccess (canaries)."""

    name = "files"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        cfg = ctx.config
        self.max_depth = cfg.watch.max_depth
        self.drop_depth = cfg.watch.max_depth
        self.budget = cfg.watch.max_watches
        self.roots = sorted(
            {os.path.realpath(p) for p in cfg.watch.paths if os.path.isdir(p)}, key=len
        )
        state_dir = os.path.realpath(cfg.agent.state_dir)
        # the agent's own state is never a drop, unless it is (above) a whole watched root
        self.own_dirs = [] if any(under(r, state_dir) for r in self.roots) else [state_dir]
        self.own_log = os.path.realpath(cfg.alert_log)
        self.canaries = {os.path.realpath(p) for p in cfg.canaries.paths}
        self.own_pid = os.getpid()
        self.drops: Inotify | None = None
        self.persist: Inotify | None = None
        self.canary_ino: Inotify | None = None
        self.fan: Fanotify | None = None
        self.places: dict[str, Place] = {}
        self.targets: set[str] = set()
        self.snapshots: dict[str, Snapshot] = {}
        self.pending: dict[tuple[str, str], Pending] = {}  # (path, role)
        self.emitted: dict[tuple[str, str], float] = {}
        self.canary_seen: dict[tuple[str, str, int], float] = {}
        self.wake = asyncio.Event()
        self.problems: dict[str, str] = {}
        self.denied = 0  # directories that could not be watched for lack of permission

    # lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.drops = Inotify(self.guarded(self.on_drop), self.overflowed("drops"))
            self.persist = Inotify(self.guarded(self.on_persist), self.on_persist_overflow)
            self.canary_ino = Inotify(
                self.guarded(self.on_canary_inotify), self.overflowed("canary")
            )
        except OSError as exc:
            self.close()
            self.report(False, f"inotify unavailable ({exc.strerror}): no file events")
            await asyncio.Event().wait()
        try:
            with self.measure("setup"):
                await loop.run_in_executor(None, self.setup)
            for ino in (self.drops, self.persist, self.canary_ino):
                ino.start(loop)
            if self.fan is not None:
                self.fan.start(loop)
            self.report_state()
            while True:
                await self.wake.wait()
                await asyncio.sleep(TICK)
                with self.measure("flush"):
                    self.flush(time.monotonic())
                if not self.pending:
                    self.wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        for watcher in (self.drops, self.persist, self.canary_ino, self.fan):
            if watcher is not None:
                watcher.close()
        self.drops = self.persist = self.canary_ino = None
        self.fan = None

    def setup(self) -> None:
        """Canaries first, then persistence, then drops: the budget goes to the most telling."""
        self.setup_canaries()
        self.setup_persistence()
        self.watch_drop_tree(deque((r, 0) for r in self.roots))
        if self.denied:
            self.problems["denied"] = (
                f"{self.denied} director{'y' if self.denied == 1 else 'ies'} cannot be watched "
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
        if self.problems:
            self.report(False, "; ".join(self.problems.values()), watches=self.watches())
        else:
            self.report(True)

    # watch budget
    def watches(self) -> int:
        return sum(len(w) for w in (self.drops, self.persist, self.canary_ino) if w is not None)

    def add_watch(self, watcher: Inotify, path: str, mask: int) -> bool:
        """Watch a directory; False if it cannot be (gone, denied), WatchLimit when spent."""
        if self.watches() >= self.budget:
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

    def limit_reached(self, what: str, depth: int | None = None) -> None:
        """Count every hit; say it once per kind. Drops shrink to the depth fully watched."""
        metrics.errors.labels("files.watch_limit").inc()
        if depth is not None:
            self.drop_depth = min(self.drop_depth, max(depth - 1, 0))
        key = f"limit:{what}"
        if key in self.problems:
            return
        limits = (
            f"watch.max_watches={self.budget}, fs.inotify.max_user_watches={kernel_watch_limit()}"
        )
        if depth is None:
            reason = f"watch limit reached ({self.watches()} watches; {limits}): {what}"
        else:
            reason = (
                f"watch limit reached ({self.watches()} watches; {limits}): drops watched "
                f"to depth {self.drop_depth} instead of {self.max_depth}"
            )
        log.warning("files: %s", reason)
        self.problems[key] = reason
        self.report_state()

    # drops
    def own(self, path: str) -> bool:
        return path.startswith(self.own_log) or any(under(path, d) for d in self.own_dirs)

    def depth_of(self, path: str) -> int:
        """Levels below the deepest watched root that holds the path."""
        root = max((r for r in self.roots if under(path, r)), key=len, default=path)
        return path[len(root) :].count("/")

    def watch_drop_tree(self, queue: deque[tuple[str, int]]) -> list[str]:
        """Watch directories breadth first (shallow levels first) down to the drop depth."""
        assert self.drops is not None
        added = []
        while queue:
            path, depth = queue.popleft()
            if depth > self.drop_depth or self.own(path) or self.drops.watching(path):
                continue
            try:
                if not self.add_watch(self.drops, path, DROP_MASK):
                    continue
            except WatchLimit:
                self.limit_reached("drops", depth)
                break
            added.append(path)
            if depth < self.drop_depth:
                queue.extend((d, depth + 1) for d in subdirs(path))
        return added

    def on_drop(self, ev: InotifyEvent) -> None:
        assert self.drops is not None
        path = ev.path
        if self.own(path) or path in self.canaries:
            return
        if ev.mask & IN_ISDIR:
            if ev.mask & IN_MOVED_FROM:
                self.drops.remove_tree(path)
            elif ev.mask & (IN_CREATE | IN_MOVED_TO):
                kind = "moved" if ev.mask & IN_MOVED_TO else "created"
                for d in self.watch_drop_tree(deque([(path, self.depth_of(path))])):
                    for f in regular_files(d, MAX_DIR_FILES):
                        self.touch(f, "drop", kind, closed=True)
            return
        if ev.mask & IN_MOVED_FROM:
            self.pending.pop((path, "drop"), None)
        elif ev.mask & IN_MOVED_TO:
            self.touch(path, "drop", "moved", closed=True)
        elif ev.mask & (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE):
            kind = "created" if ev.mask & IN_CREATE else "modified"
            self.touch(path, "drop", kind, closed=bool(ev.mask & IN_CLOSE_WRITE))
        elif ev.mask & IN_ATTRIB and self.executable(path):  # chmod +x after the write
            self.touch(path, "drop", "modified", closed=True)

    @staticmethod
    def executable(path: str) -> bool:
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

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
                    self.deliver_drop(path, p.kind)
                else:
                    self.deliver_persistence(path, p.kind)
            except Exception:
                log.exception("file change %s failed", path)
                metrics.errors.labels("collector.files").inc()
        if len(self.emitted) > 4096:
            self.emitted = {k: t for k, t in self.emitted.items() if now - t < MIN_GAP}

    def deliver_drop(self, path: str, kind: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return  # gone already
        if stat.S_ISREG(st.st_mode):
            self.emit(FileChange(time=time.time(), path=path, kind=kind, role="drop"))

    # persistence
    def setup_persistence(self) -> None:
        w = self.ctx.config.watch
        targets = list(w.persistence)
        for pattern in w.homes:
            for home in sorted(glob.glob(pattern)):
                if os.path.isdir(home) and not os.path.islink(home):
                    targets.extend(os.path.join(home, f) for f in w.home_files)
        for target in targets:
            try:
                self.place(os.path.normpath(os.path.abspath(target)), announce=False)
            except WatchLimit:
                self.limit_reached("some persistence places are not watched")
                return

    def place(self, target: str, announce: bool) -> None:
        """Watch a persistence file or directory, or the nearest existing directory above it
        so that its creation is seen. `announce` reports what already exists as created."""
        self.targets.add(target)
        if os.path.isdir(target):
            self.watch_place(os.path.realpath(target), PERSIST_DEPTH, announce)
            return
        child, parent = target, os.path.dirname(target)
        while parent != child and not os.path.isdir(parent):
            child, parent = parent, os.path.dirname(parent)
        if parent == child:
            return
        assert self.persist is not None
        if not self.persist.watching(parent) and not self.add_watch(
            self.persist, parent, PERSIST_MASK
        ):
            return
        self.places.setdefault(parent, Place()).names.add(os.path.basename(child))
        if child != target or not os.path.lexists(target):
            return
        if announce:
            self.touch(target, "persistence", "created", closed=True)
        else:
            self.snapshot(target)

    def watch_place(self, top: str, depth: int, announce: bool) -> None:
        """Watch a whole persistence directory and its subdirectories to `depth` levels."""
        assert self.persist is not None
        queue = deque([(top, depth)])
        while queue:
            path, left = queue.popleft()
            if not self.persist.watching(path) and not self.add_watch(
                self.persist, path, PERSIST_MASK
            ):
                continue
            place = self.places.setdefault(path, Place())
            place.depth = max(place.depth or 0, left)
            for f in regular_files(path, MAX_DIR_FILES) + self.links(path):
                if announce:
                    self.touch(f, "persistence", "created", closed=True)
                else:
                    self.snapshot(f)
            if left > 0:
                queue.extend((d, left - 1) for d in subdirs(path))

    @staticmethod
    def links(path: str) -> list[str]:
        """Symbolic links in a directory (an enabled unit is a link in a .wants dir)."""
        try:
            with os.scandir(path) as it:
                return [e.path for e in it if e.is_symlink()]
        except OSError:
            return []

    def snapshot(self, path: str) -> Snapshot | None:
        try:
            st = os.lstat(path)
            lines = read_lines(path)[1] if stat.S_ISREG(st.st_mode) else ()
        except OSError:
            self.snapshots.pop(path, None)
            return None
        snap = Snapshot(ident(st), lines)
        self.snapshots[path] = snap
        return snap

    def on_persist(self, ev: InotifyEvent) -> None:
        assert self.persist is not None
        place = self.places.get(ev.dir)
        path = ev.path
        if place is None or path in self.canaries:
            return
        if place.depth is None and ev.name not in place.names:
            return
        if ev.mask & IN_ISDIR:
            if ev.mask & (IN_MOVED_FROM | IN_DELETE):
                self.persist.remove_tree(path)
                for p in [p for p in self.places if under(p, path)]:
                    del self.places[p]
            elif ev.mask & (IN_CREATE | IN_MOVED_TO):
                self.placed_dir(path, place)
            return
        if ev.mask & (IN_MOVED_FROM | IN_DELETE):
            self.snapshots.pop(path, None)
            self.pending.pop((path, "persistence"), None)
        elif ev.mask & IN_MOVED_TO:
            self.touch(path, "persistence", "moved", closed=True)
        elif ev.mask & (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE):
            kind = "created" if ev.mask & IN_CREATE else "modified"
            self.touch(path, "persistence", kind, closed=bool(ev.mask & IN_CLOSE_WRITE))

    def placed_dir(self, path: str, parent: Place) -> None:
        """A directory appeared in a persistence place: watch it and report its files."""
        try:
            if parent.depth is not None and parent.depth > 0:
                self.watch_place(path, parent.depth - 1, announce=True)
            elif path in self.targets:
                self.watch_place(path, PERSIST_DEPTH, announce=True)
            else:  # a step towards missing targets (mkdir ~/.ssh)
                for target in [t for t in self.targets if under(t, path)]:
                    self.place(target, announce=True)
        except WatchLimit:
            self.limit_reached("some persistence places are not watched")

    def deliver_persistence(self, path: str, kind: str) -> None:
        old = self.snapshots.get(path)
        new = self.snapshot(path)
        if new is None:
            return
        added = added_lines(old.lines if old else (), new.lines)
        if old is not None:
            if not added:
                return  # rewritten or shortened, nothing added
            kind = "modified"
        elif kind == "modified":
            kind = "created"
        self.emit(
            FileChange(
                time=time.time(),
                path=path,
                kind=kind,
                role="persistence",
                added=added[:MAX_ADDED],
            )
        )

    def on_persist_overflow(self) -> None:
        """Events were lost: diff every known persistence file and look for new ones."""
        self.overflowed("persistence")()
        for path, snap in list(self.snapshots.items()):
            try:
                changed = ident(os.lstat(path)) != snap.ident
            except OSError:
                self.snapshots.pop(path, None)
                continue
            if changed:
                self.touch(path, "persistence", "modified", closed=True)
        for d, place in list(self.places.items()):
            if place.depth is not None:
                for f in regular_files(d, MAX_DIR_FILES):
                    if f not in self.snapshots:
                        self.touch(f, "persistence", "created", closed=True)

    # canaries
    def setup_canaries(self) -> None:
        if not self.canaries:
            return
        try:
            self.fan = Fanotify(self.on_fanotify, self.overflowed("canary"))
        except OSError as exc:
            self.problems["canary"] = (
                f"fanotify unavailable ({exc.strerror}): canary opens seen by inotify, "
                "without the reader's pid"
            )
        assert self.canary_ino is not None
        for path in sorted(self.canaries):
            try:
                self.add_watch(self.canary_ino, os.path.dirname(path), CANARY_DIR_MASK)
                self.arm(path)
            except WatchLimit:
                self.limit_reached("some canaries are not watched")
                return

    def arm(self, path: str) -> None:
        """Mark the canary file itself for opens and reads (again after it was replaced)."""
        if not os.path.isfile(path):
            log.warning("canary %s is not a file; watching for its creation", path)
            return
        try:
            if self.fan is not None:
                self.fan.mark(path, FAN_MASK)
            else:
                assert self.canary_ino is not None
                self.add_watch(self.canary_ino, path, CANARY_FILE_MASK)
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
            self.canary_access(path, kind, pid)
        except Exception:
            log.exception("canary event on %s failed", path)
            metrics.errors.labels("collector.files").inc()

    def on_canary_inotify(self, ev: InotifyEvent) -> None:
        path = ev.path
        if path not in self.canaries:
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
                path, self.ctx.procfs, self.own_pid, lambda pids: self.emit_access(path, kind, pids)
            )
        elif ev.mask & (IN_DELETE | IN_MOVED_FROM):
            self.canary_access(path, "deleted", 0)
        elif ev.mask & (IN_CREATE | IN_MOVED_TO):
            self.arm(path)
            self.canary_access(path, "modified", 0)

    def recent(self, path: str, kind: str, pid: int) -> bool:
        """True if this access was reported within CANARY_GAP (and notes it otherwise)."""
        now = time.monotonic()
        key = (path, kind, pid)
        if now - self.canary_seen.get(key, -CANARY_GAP) < CANARY_GAP:
            return True
        if len(self.canary_seen) > 4096:
            self.canary_seen = {k: t for k, t in self.canary_seen.items() if now - t < CANARY_GAP}
        self.canary_seen[key] = now
        return False

    def canary_access(self, path: str, kind: str, pid: int) -> None:
        if not self.recent(path, kind, pid):
            self.emit_access(path, kind, [pid] if pid else [])

    def emit_access(self, path: str, kind: str, pids: list[int]) -> None:
        procs = [p for p in map(self.ctx.procs.get, pids) if p is not None]
        self.emit(FileAccess(time=time.time(), path=path, kind=kind, pids=pids, procs=procs))
