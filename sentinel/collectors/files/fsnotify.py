"""inotify and fanotify through ctypes, read on the asyncio loop: no threads, one fd each."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]

# linux/inotify.h
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# linux/fanotify.h
FAN_ACCESS = 0x00000001
FAN_MODIFY = 0x00000002
FAN_CLOSE_WRITE = 0x00000008
FAN_OPEN = 0x00000020
FAN_Q_OVERFLOW = 0x00004000
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_MARK_ADD = 0x00000001
FAN_MARK_DONT_FOLLOW = 0x00000004
FAN_NOFD = -1
AT_FDCWD = -100

INOTIFY_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len; name follows
FANOTIFY_META = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
READ_SIZE = 64 * 1024
READS_PER_WAKE = 16  # bounded work per wake-up, so a storm cannot starve the loop


def _raise(what: str, path: str = "") -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}", path or None)


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One inotify event: `dir` is the watched path, `name` the entry in it ('' for itself)."""

    dir: str
    name: str
    mask: int

    @property
    def path(self) -> str:
        return os.path.join(self.dir, self.name) if self.name else self.dir


class _EventFd:
    """A non-blocking notification fd read on the event loop in bounded batches."""

    fd: int
    loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.fd, self.read)

    def read(self) -> None:
        for _ in range(READS_PER_WAKE):
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.loop is not None:
            self.loop.remove_reader(self.fd)
        os.close(self.fd)


class Inotify(_EventFd):
    """One inotify instance; `add` returns the watch count so callers can keep a budget."""

    def __init__(
        self,
        on_event: Callable[[InotifyEvent], None],
        on_overflow: Callable[[], None],
    ) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            _raise("inotify_init1")
        self.fd = fd
        self.on_event = on_event
        self.on_overflow = on_overflow
        self.paths: dict[int, str] = {}
        self.wds: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, path: str, mask: int) -> None:
        """Watch a path (raises OSError: ENOSPC at the watch limit, ENOENT, ENOTDIR...)."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            _raise("inotify_add_watch", path)
        old = self.paths.get(wd)
        if old is not None and old != path:
            self.wds.pop(old, None)  # the same inode reached by a new path (a move)
        self.paths[wd] = path
        self.wds[path] = wd

    def watching(self, path: str) -> bool:
        return path in self.wds

    def remove_tree(self, top: str) -> None:
        """Stop watching a path and everything watched below it."""
        prefix = top.rstrip("/") + "/"
        for path in [p for p in self.wds if p == top or p.startswith(prefix)]:
            wd = self.wds.pop(path)
            self.paths.pop(wd, None)
            _libc.inotify_rm_watch(self.fd, wd)

    def _dispatch(self, data: bytes) -> None:
        off = 0
        while off + INOTIFY_EVENT.size <= len(data):
            wd, mask, _, length = INOTIFY_EVENT.unpack_from(data, off)
            start = off + INOTIFY_EVENT.size
            name = os.fsdecode(data[start : start + length].rstrip(b"\0"))
            off = start + length
            if mask & IN_Q_OVERFLOW:
                self.on_overflow()
                continue
            path = self.paths.get(wd)
            if mask & IN_IGNORED:
                if path is not None:
                    del self.paths[wd]
                    if self.wds.get(path) == wd:
                        del self.wds[path]
                continue
            if path is not None:
                self.on_event(InotifyEvent(path, name, mask))

    def close(self) -> None:
        super().close()
        self.paths.clear()
        self.wds.clear()


class Fanotify(_EventFd):
    """A notification-class fanotify group (root only): each event names the pid that did it."""

    def __init__(self, on_event: Callable[[str, int, int], None], on_overflow: Callable[[], None]):
        fd = _libc.fanotify_init(
            FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE
        )
        if fd < 0:
            _raise("fanotify_init")
        self.fd = fd
        self.on_event = on_event  # (path, mask, pid)
        self.on_overflow = on_overflow

    def mark(self, path: str, mask: int) -> None:
        """Report these events on this file (an inode mark: a replaced file needs a new one);
        a symlink there is marked itself, never what it points to."""
        flags = FAN_MARK_ADD | FAN_MARK_DONT_FOLLOW
        if _libc.fanotify_mark(self.fd, flags, mask, AT_FDCWD, os.fsencode(path)) < 0:
            _raise("fanotify_mark", path)

    def _dispatch(self, data: bytes) -> None:
        off = 0
        while off + FANOTIFY_META.size <= len(data):
            length, _, _, _, mask, fd, pid = FANOTIFY_META.unpack_from(data, off)
            if length < FANOTIFY_META.size:
                return
            off += length
            if fd == FAN_NOFD:
                if mask & FAN_Q_OVERFLOW:
                    self.on_overflow()
                continue
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.on_event(path, mask, pid)
