"""Open a user-controlled path with no symlink at any component, as root never follows one.

`openat2(2)` with RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH (Linux 5.6+),
through the raw syscall; where the kernel lacks it, the same walk by hand: one O_PATH |
O_NOFOLLOW descriptor per component. Either way a link anywhere on the way is refused with
ELOOP (or ENOTDIR), and a `..` that would climb out of the starting directory with EXDEV.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import stat

SYS_OPENAT2 = 437  # the same number on every architecture (the unified syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH
O_PATH = getattr(os, "O_PATH", 0o10000000)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_have_openat2: bool | None = None  # unknown until the first call


def _openat2(dir_fd: int, path: bytes, flags: int) -> int:
    how = _OpenHow(flags, 0, RESOLVE)
    while True:
        fd = _syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):
            raise OSError(err, os.strerror(err), os.fsdecode(path))


def _walk(dir_fd: int, path: bytes, flags: int) -> int:
    """The openat2 walk by hand: O_PATH | O_NOFOLLOW per component, never above dir_fd."""
    parts = [p for p in path.split(b"/") if p and p != b"."]
    if not parts:
        return os.open(".", flags & ~os.O_NOFOLLOW, dir_fd=dir_fd)
    if b".." in parts:
        raise OSError(errno.EXDEV, "'..' in a path opened beneath a directory", os.fsdecode(path))
    fd = dir_fd
    try:
        for part in parts[:-1]:
            nxt = os.open(part, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if fd != dir_fd:
                os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        if fd != dir_fd:
            os.close(fd)


def open_beneath(dir_fd: int, path: str | bytes, flags: int = FILE_FLAGS) -> int:
    """A descriptor for `path` relative to `dir_fd`, never through a symlink and never
    outside `dir_fd`; OSError (ELOOP, ENOTDIR, EXDEV, ENOENT...) otherwise."""
    global _have_openat2
    raw = os.fsencode(path).lstrip(b"/") or b"."
    if _have_openat2 is not False:
        try:
            fd = _openat2(dir_fd, raw, flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _have_openat2:
                raise
            _have_openat2 = False  # no openat2 here (old kernel, or a seccomp filter)
        else:
            _have_openat2 = True
            return fd
    return _walk(dir_fd, raw, flags)


def open_nofollow(path: str | bytes, flags: int = FILE_FLAGS) -> int:
    """Open an absolute path with no symlink at any of its components."""
    root = os.open("/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_beneath(root, path, flags)
    finally:
        os.close(root)


def stat_nofollow(path: str | bytes) -> os.stat_result:
    """lstat() of a path that has no symlink before its last component."""
    fd = open_nofollow(path, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def read_nofollow(
    path: str | bytes, keep: int, hash_cap: int
) -> tuple[os.stat_result, bytes, str | None]:
    """(fstat, first `keep` bytes, sha256 of the whole file or None past `hash_cap` bytes) of
    a regular file with no symlink anywhere on its path; OSError otherwise (EISDIR...)."""
    fd = open_nofollow(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
        digest = hashlib.sha256() if st.st_size <= hash_cap else None
        head = bytearray()
        while chunk := os.read(fd, 1 << 16):
            if len(head) < keep:
                head += chunk[: keep - len(head)]
            if digest is None:
                if len(head) >= keep:
                    break
            else:
                digest.update(chunk)
        return st, bytes(head), digest.hexdigest() if digest else None
    finally:
        os.close(fd)


def listing(path: str | bytes, limit: int) -> tuple[list[str], list[str], list[str]]:
    """(subdirectories, regular files, symlinks) of a directory reached with no symlink on
    its path, as full paths, at most `limit` files; ([], [], []) if it cannot be opened."""
    base = os.fsdecode(path).rstrip("/")
    dirs: list[str] = []
    files: list[str] = []
    links: list[str] = []
    try:
        fd = open_nofollow(path, DIR_FLAGS)
    except OSError:
        return dirs, files, links
    try:
        with os.scandir(fd) as it:
            for e in it:
                if e.is_symlink():
                    links.append(f"{base}/{e.name}")
                elif e.is_dir(follow_symlinks=False):
                    dirs.append(f"{base}/{e.name}")
                elif e.is_file(follow_symlinks=False) and len(files) < limit:
                    files.append(f"{base}/{e.name}")
    except OSError:
        pass
    finally:
        os.close(fd)
    return dirs, files, links
