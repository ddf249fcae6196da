"""Persistence places: cron, units, rc files, keys; what a change added, line by line."""

from __future__ import annotations

import base64
import errno
import glob
import hashlib
import json
import os
import secrets
import stat
import time
from array import array
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentinel.collectors.files.budget import WatchLimit, regular_files
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
from sentinel.core import safeopen
from sentinel.core.events import FileChange
from sentinel.core.paths import under

if TYPE_CHECKING:
    from sentinel.collectors.files.collector import FilesCollector

SNAPSHOT_CAP = 256 * 1024  # bytes of each persistence file kept to diff against
HASH_CAP = 64 * 1024 * 1024  # a larger persistence file gets no sha256 in its event
MAX_ADDED = 1000  # added lines carried by one event
PERSIST_DEPTH = 2  # subdirectories of a persistence dir watched (unit .wants/, crontabs/)
PERSIST_MASK = DIR_MASK | IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM
PERSIST_MASK |= IN_DELETE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a persistence file held: its identity and a multiset of keyed line hashes, never
    the text. `hashes` is None when the snapshot budget was spent (every line counts new)."""

    ident: tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns (not the user's to set)
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


def encode(snap: Snapshot) -> list[object]:
    """A snapshot as JSON: identity and base64 of the hash and count arrays."""
    arrays = [
        base64.b64encode(a.tobytes()).decode() if a is not None else None
        for a in (snap.hashes, snap.counts)
    ]
    return [*snap.ident, *arrays]


def decode(entry: list[object]) -> Snapshot:
    if len(entry) == 5:  # saved before the ctime was kept: never the same identity again
        entry = [*entry[:3], -1, *entry[3:]]
    ino, size, mtime, ctime, hashes, counts = entry
    key = (int(ino), int(size), int(mtime), int(ctime))  # type: ignore[call-overload]
    if not isinstance(hashes, str) or not isinstance(counts, str):
        return Snapshot(key, None, None)
    h, c = array("Q"), array("I")
    h.frombytes(base64.b64decode(hashes))
    c.frombytes(base64.b64decode(counts))
    return Snapshot(key, h, c)


def added_lines(
    old: Snapshot | None, new: list[bytes], hasher: LineHasher, limit: int = MAX_ADDED
) -> tuple[list[str], bool]:
    """Lines of `new` that `old` did not have (as a multiset: a repeated line counts), at
    most `limit`; and whether more were added than that."""
    used: Counter[int] = Counter()
    out = []
    for line in new:
        digest = hasher(line)
        if old is not None and used[digest] < old.count(digest):
            used[digest] += 1
        elif len(out) >= limit:
            return out, True
        else:
            out.append(line.decode("utf-8", "replace"))
    return out, False


def ident(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says a file is unchanged: a user can keep its inode, size and mtime (an
    in-place write, then utime) while rewriting it, but every write moves the ctime."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Persistence:
    """Watches persistence files and directories and diffs each change against a snapshot."""

    def __init__(self, files: FilesCollector) -> None:
        self.files = files
        self.watcher: Inotify | None = None
        self.places: dict[str, Place] = {}
        self.targets: set[str] = set()
        self.snapshots: dict[str, Snapshot] = {}
        self.homes: dict[str, int] = {}  # real path of each watched home -> its owner
        self.hasher = LineHasher()
        self.snapshot_budget = files.ctx.config.watch.snapshot_budget
        self.snapshot_bytes = 0  # kept by all snapshots together
        self.saved: dict[str, Snapshot] | None = None  # what the last run knew, until setup ends
        self.ready = False  # setup done: the snapshots may be saved
        self.dirty = True

    def setup(self) -> None:
        """System places as configured (links resolved: root's config); places in homes
        below each home's real path, where no symlink is ever followed."""
        w = self.files.ctx.config.watch
        targets = [os.path.realpath(p) for p in w.persistence]
        for pattern in w.homes:
            for home in sorted(glob.glob(pattern)):
                try:
                    st = os.lstat(home)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    real = os.path.realpath(home)
                    self.homes[real] = st.st_uid
                    targets.extend(os.path.normpath(os.path.join(real, f)) for f in w.home_files)
        for target in targets:
            try:
                self.place(target, announce=False)
            except WatchLimit:
                self.limit_reached()
                return

    def home_of(self, path: str) -> str | None:
        return next((h for h in self.homes if under(path, h)), None)

    def link_on_way(self, path: str) -> str | None:
        """The first symlink between a path's home and the path itself, if any."""
        home = self.home_of(path)
        if home is None:
            return None
        at = home
        for part in os.path.relpath(path, home).split("/"):
            at = os.path.join(at, part)
            try:
                if stat.S_ISLNK(os.lstat(at).st_mode):
                    return at
            except OSError:
                return None
        return None

    def refuse(self, link: str) -> None:
        try:
            to = os.readlink(link)
        except OSError:
            to = "?"
        self.files.refused(link, f"a symlink to {to} in a home")

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
        link = self.link_on_way(target)
        if link is not None and link != target:
            self.refuse(link)  # ~/.config swapped for a link: nothing below it is watched
            return
        if link is None and os.path.isdir(target):
            self.watch_place(target, PERSIST_DEPTH, announce)
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
            self.baseline(target)

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
            dirs, files, links = safeopen.listing(path, MAX_DIR_FILES)
            for f in files + links:
                if announce:
                    self.files.touch(f, "persistence", "created", closed=True)
                else:
                    self.baseline(f)
            if left > 0:
                queue.extend((d, left - 1) for d in dirs)

    def snapshot(self, path: str) -> tuple[Snapshot, list[bytes], str | None] | None:
        """Read a file with no symlink on its path, keep its snapshot (within the budget) and
        return it with the lines and the file's sha256. A file in a home that its owner does
        not own is not read; a path through a symlink in a home is refused and reported."""
        self.forget(path)
        try:
            st = safeopen.stat_nofollow(path)
            lines: list[bytes] | None = []
            sha = None
            if stat.S_ISREG(st.st_mode) and self.may_read(path, st):
                st, head, sha = safeopen.read_nofollow(path, SNAPSHOT_CAP, HASH_CAP)
                lines = head.splitlines()
            elif stat.S_ISLNK(st.st_mode) and self.home_of(path) and self.leads_to_target(path):
                self.refuse(path)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and (link := self.link_on_way(path)):
                self.refuse(link)
            return None
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
        self.dirty = True
        return snap, lines or [], sha

    def may_read(self, path: str, st: os.stat_result) -> bool:
        """Outside homes always; in a home only a file its owner owns."""
        home = self.home_of(path)
        return home is None or st.st_uid == self.homes[home]

    def leads_to_target(self, path: str) -> bool:
        """Whether a path is a watched place or a step towards one (~/.config/autostart)."""
        return any(t == path or under(t, path) for t in self.targets)

    def forget(self, path: str) -> None:
        old = self.snapshots.pop(path, None)
        if old is not None:
            self.snapshot_bytes -= old.size
            self.dirty = True

    def baseline(self, path: str) -> None:
        """Snapshot a file at start; after a restart, report what it gained while the agent
        was down (diffed against the saved hashes), or that it appeared meanwhile."""
        new = self.snapshot(path)
        if new is None or self.saved is None:
            return
        old = self.saved.pop(path, None)
        if old is not None and old.ident == new[0].ident:
            return
        self.report(path, "created", old, new)

    def load(self, data: bytes | None) -> None:
        """The last run's snapshots (and the key their line hashes were made with)."""
        if not data:
            self.saved = None
            return
        doc = json.loads(data)
        self.hasher = LineHasher(bytes.fromhex(doc["key"]))
        self.saved = {path: decode(entry) for path, entry in doc["snapshots"].items()}

    def dump(self) -> Callable[[], bytes] | None:
        """A serialiser of the snapshots as they are now; None before setup or if unchanged."""
        if not self.ready or not self.dirty:
            return None
        self.dirty = False
        snaps, key = dict(self.snapshots), self.hasher.key
        return lambda: json.dumps(
            {"key": key.hex(), "snapshots": {p: encode(s) for p, s in snaps.items()}}
        ).encode()

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
        if new is not None:
            self.report(path, kind, old, new)

    def report(
        self,
        path: str,
        kind: str,
        old: Snapshot | None,
        new: tuple[Snapshot, list[bytes], str | None],
    ) -> None:
        """Emit what a file gained since `old` (all of it if there was no `old`). A file
        longer than SNAPSHOT_CAP or with more than MAX_ADDED new lines is `partial`: what
        was not read or not carried may be what matters, so it is never taken as quiet."""
        added, cut = added_lines(old, new[1], self.hasher)
        size = new[0].ident[1]
        partial = cut or size > SNAPSHOT_CAP
        if old is not None:
            if not added and not (partial and old.ident != new[0].ident):
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
                sha256=new[2],
                size=size,
                partial=partial,
            )
        )

    def on_overflow(self) -> None:
        """Events were lost: diff every known persistence file and look for new ones."""
        self.files.overflowed("persistence")()
        for path, snap in list(self.snapshots.items()):
            try:
                changed = ident(safeopen.stat_nofollow(path)) != snap.ident
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
