"""Persistence places: cron, units, rc files, keys; what a change added, line by line."""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import stat
import time
from array import array
from bisect import bisect_left
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentinel.collectors.files.budget import WatchLimit, regular_files, subdirs
from sentinel.collectors.files.drops import DIR_MASK, MAX_DIR_FILES
from sentinel.collectors.files.fsnotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Inotify,
    InotifyEvent,
)
from sentinel.core.events import FileChange
from sentinel.core.paths import under

if TYPE_CHECKING:
    from sentinel.collectors.files.collector import FilesCollector

SNAPSHOT_CAP = 256 * 1024  # bytes of each persistence file kept to diff against
MAX_ADDED = 1000  # added lines carried by one event
PERSIST_DEPTH = 2  # subdirectories of a persistence dir watched (unit .wants/, crontabs/)
PERSIST_MASK = DIR_MASK | IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM
PERSIST_MASK |= IN_DELETE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a persistence file held: its identity and a multiset of keyed line hashes, never
    the text. `hashes` is None when the snapshot budget was spent (every line counts new)."""

    ident: tuple[int, int, int]  # inode, size, mtime_ns
    hashes: array[int] | None  # sorted distinct 64-bit keyed hashes of the lines
    counts: array[int] | None  # how often each of them occurs

    @property
    def size(self) -> int:
        """Bytes this snapshot keeps."""
        if self.hashes is None or self.counts is None:
            return 0
        return self.hashes.itemsize * len(self.hashes) + self.counts.itemsize * len(self.counts)

    def count(self, digest: int) -> int:
        """How often a line with this hash occurred."""
        if self.hashes is None or self.counts is None:
            return 0
        i = bisect_left(self.hashes, digest)
        return self.counts[i] if i < len(self.hashes) and self.hashes[i] == digest else 0


class LineHasher:
    """64-bit keyed BLAKE2b of a line: fixed size per line, and a user who cannot read the key
    cannot craft a line that collides with one already there."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def __call__(self, line: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(line, digest_size=8, key=self.key).digest())

    def snapshot(self, st: os.stat_result, lines: list[bytes] | None) -> Snapshot:
        if lines is None:
            return Snapshot(ident(st), None, None)
        counted = sorted((self(line), n) for line, n in Counter(lines).items())
        return Snapshot(
            ident(st), array("Q", (h for h, _ in counted)), array("I", (n for _, n in counted))
        )


@dataclass(slots=True)
class Place:
    """A watched persistence directory: all of it (to `depth` more levels) or some names."""

    depth: int | None = None
    names: set[str] = field(default_factory=set)


def read_lines(path: str) -> tuple[os.stat_result, list[bytes]]:
    """The first SNAPSHOT_CAP bytes of a regular file as lines, never following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return st, []
        data = os.read(fd, SNAPSHOT_CAP)
    finally:
        os.close(fd)
    return st, data.splitlines()


def added_lines(
    old: Snapshot | None, new: list[bytes], hasher: LineHasher, limit: int = MAX_ADDED
) -> list[str]:
    """Lines of `new` that `old` did not have (as a multiset: a repeated line counts)."""
    used: Counter[int] = Counter()
    out = []
    for line in new:
        digest = hasher(line)
        if old is not None and used[digest] < old.count(digest):
            used[digest] += 1
        else:
            out.append(line.decode("utf-8", "replace"))
            if len(out) >= limit:
                break
    return out


def ident(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def links(path: str) -> list[str]:
    """Symbolic links in a directory (an enabled unit is a link in a .wants dir)."""
    try:
        with os.scandir(path) as it:
            return [e.path for e in it if e.is_symlink()]
    except OSError:
        return []


class Persistence:
    """Watches persistence files and directories and diffs each change against a snapshot."""

    def __init__(self, files: FilesCollector) -> None:
        self.files = files
        self.watcher: Inotify | None = None
        self.places: dict[str, Place] = {}
        self.targets: set[str] = set()
        self.snapshots: dict[str, Snapshot] = {}
        self.hasher = LineHasher()
        self.snapshot_budget = files.ctx.config.watch.snapshot_budget
        self.snapshot_bytes = 0  # kept by all snapshots together

    def setup(self) -> None:
        w = self.files.ctx.config.watch
        targets = list(w.persistence)
        for pattern in w.homes:
            for home in sorted(glob.glob(pattern)):
                if os.path.isdir(home) and not os.path.islink(home):
                    targets.extend(os.path.join(home, f) for f in w.home_files)
        for target in targets:
            try:
                self.place(os.path.normpath(os.path.abspath(target)), announce=False)
            except WatchLimit:
                self.limit_reached()
                return

    def limit_reached(self) -> None:
        self.files.limit_reached(
            "persistence",
            f"watch limit reached ({self.files.budget.describe()}): "
            "some persistence places are not watched",
        )

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
        assert self.watcher is not None
        if not self.watcher.watching(parent) and not self.files.budget.add(
            self.watcher, parent, PERSIST_MASK
        ):
            return
        self.places.setdefault(parent, Place()).names.add(os.path.basename(child))
        if child != target or not os.path.lexists(target):
            return
        if announce:
            self.files.touch(target, "persistence", "created", closed=True)
        else:
            self.snapshot(target)

    def watch_place(self, top: str, depth: int, announce: bool) -> None:
        """Watch a whole persistence directory and its subdirectories to `depth` levels."""
        assert self.watcher is not None
        queue = deque([(top, depth)])
        while queue:
            path, left = queue.popleft()
            if not self.watcher.watching(path) and not self.files.budget.add(
                self.watcher, path, PERSIST_MASK
            ):
                continue
            place = self.places.setdefault(path, Place())
            place.depth = max(place.depth or 0, left)
            for f in regular_files(path, MAX_DIR_FILES) + links(path):
                if announce:
                    self.files.touch(f, "persistence", "created", closed=True)
                else:
                    self.snapshot(f)
            if left > 0:
                queue.extend((d, left - 1) for d in subdirs(path))

    def snapshot(self, path: str) -> tuple[Snapshot, list[bytes]] | None:
        """Read a file, keep its new snapshot (within the budget) and return it with the lines."""
        try:
            st = os.lstat(path)
            lines = read_lines(path)[1] if stat.S_ISREG(st.st_mode) else []
        except OSError:
            self.forget(path)
            return None
        self.forget(path)
        snap = self.hasher.snapshot(st, lines)
        if self.snapshot_bytes + snap.size > self.snapshot_budget:
            snap = self.hasher.snapshot(st, None)
            self.files.limit_reached(
                "snapshots",
                f"snapshot budget spent (watch.snapshot_budget={self.snapshot_budget} bytes): "
                "every line of some persistence files counts as added when they change",
            )
        self.snapshots[path] = snap
        self.snapshot_bytes += snap.size
        return snap, lines

    def forget(self, path: str) -> None:
        old = self.snapshots.pop(path, None)
        if old is not None:
            self.snapshot_bytes -= old.size

    def on_event(self, ev: InotifyEvent) -> None:
        assert self.watcher is not None
        place = self.places.get(ev.dir)
        path = ev.path
        if place is None or path in self.files.canaries.paths:
            return
        if place.depth is None and ev.name not in place.names:
            return
        if ev.mask & IN_ISDIR:
            if ev.mask & (IN_MOVED_FROM | IN_DELETE):
                self.watcher.remove_tree(path)
                for p in [p for p in self.places if under(p, path)]:
                    del self.places[p]
            elif ev.mask & (IN_CREATE | IN_MOVED_TO):
                self.placed_dir(path, place)
            return
        if ev.mask & (IN_MOVED_FROM | IN_DELETE):
            self.forget(path)
            self.files.pending.pop((path, "persistence"), None)
        elif ev.mask & IN_MOVED_TO:
            self.files.touch(path, "persistence", "moved", closed=True)
        elif ev.mask & (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE):
            kind = "created" if ev.mask & IN_CREATE else "modified"
            self.files.touch(path, "persistence", kind, closed=bool(ev.mask & IN_CLOSE_WRITE))

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
            self.limit_reached()

    def deliver(self, path: str, kind: str) -> None:
        old = self.snapshots.get(path)
        new = self.snapshot(path)
        if new is None:
            return
        added = added_lines(old, new[1], self.hasher)
        if old is not None:
            if not added:
                return  # rewritten or shortened, nothing added
            kind = "modified"
        elif kind == "modified":
            kind = "created"
        self.files.emit(
            FileChange(
                time=time.time(),
                path=path,
                kind=kind,
                role="persistence",
                added=added,
            )
        )

    def on_overflow(self) -> None:
        """Events were lost: diff every known persistence file and look for new ones."""
        self.files.overflowed("persistence")()
        for path, snap in list(self.snapshots.items()):
            try:
                changed = ident(os.lstat(path)) != snap.ident
            except OSError:
                self.forget(path)
                continue
            if changed:
                self.files.touch(path, "persistence", "modified", closed=True)
        for d, place in list(self.places.items()):
            if place.depth is not None:
                for f in regular_files(d, MAX_DIR_FILES):
                    if f not in self.snapshots:
                        self.files.touch(f, "persistence", "created", closed=True)
