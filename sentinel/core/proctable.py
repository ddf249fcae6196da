"""Process facts read straight from procfs, once per (pid, start_time)."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
import sys
import weakref
from functools import lru_cache

from sentinel.core import launch
from sentinel.core.model import Ancestor, Proc, same_start

CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_ANCESTORS = 16
SHARED_CHARS = 256  # strings up to this long are interned (see _shared)
# the reader ran out of something (fds, memory): the process exists, its facts are unread
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


class ProcReadError(OSError):
    """A /proc read failed for lack of a resource; retry later, never take it as absence."""


def _check(exc: OSError, strict: bool) -> None:
    if strict and exc.errno in RESOURCE_ERRNOS:
        raise ProcReadError(exc.errno, os.strerror(exc.errno)) from exc


@lru_cache(maxsize=4)
def boot_time(procfs: str = "/proc") -> float:
    with open(os.path.join(procfs, "stat"), "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError(f"no btime in {procfs}/stat")


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_stat(path: str) -> bytes:
    """A stat file (a few hundred bytes) by bare fd calls: the sample's hot read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def parse_stat(data: bytes) -> tuple[str, list[bytes]]:
    """comm and the fields after it (state is [0], ppid [1], utime [11], starttime [19])."""
    lo, hi = data.index(b"("), data.rindex(b")")
    return data[lo + 1 : hi].decode("utf-8", "replace"), data[hi + 2 :].split()


def read_stat(
    pid: int, procfs: str = "/proc", strict: bool = False
) -> tuple[str, int, float, float, int] | None:
    """(comm, ppid, start_time epoch, cpu seconds, tty_nr) or None if the process is gone;
    `strict` raises ProcReadError when the read failed for lack of a resource."""
    try:
        comm, rest = parse_stat(_read_stat(f"{procfs}/{pid}/stat"))
    except OSError as exc:
        _check(exc, strict)
        return None
    except ValueError:
        return None
    start = boot_time(procfs) + int(rest[19]) / CLK_TCK
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return comm, int(rest[1]), start, cpu, int(rest[4])


def cpu_times(pid: int, procfs: str = "/proc") -> tuple[float, float] | None:
    """(utime + stime, cutime + cstime of reaped children) in seconds; the cheap read."""
    try:
        _, rest = parse_stat(_read_stat(f"{procfs}/{pid}/stat"))
    except (OSError, ValueError):
        return None
    return (int(rest[11]) + int(rest[12])) / CLK_TCK, (int(rest[13]) + int(rest[14])) / CLK_TCK


def stat_times(pid: int, procfs: str = "/proc") -> tuple[float, float, float, int] | None:
    """(own CPU seconds, reaped children's CPU seconds, start time epoch, ppid now) from
    one read."""
    try:
        _, rest = parse_stat(_read_stat(f"{procfs}/{pid}/stat"))
    except (OSError, ValueError):
        return None
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return (
        cpu,
        (int(rest[13]) + int(rest[14])) / CLK_TCK,
        boot_time(procfs) + int(rest[19]) / CLK_TCK,
        int(rest[1]),
    )


def list_pids(procfs: str = "/proc") -> list[int]:
    try:
        return [int(n) for n in os.listdir(procfs) if n.isdigit()]
    except OSError:
        return []


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _read_or_empty(path: str) -> bytes:
    try:
        return _read(path)
    except OSError:
        return b""


def _uid(pid: int, procfs: str, strict: bool = False) -> int:
    return _uid_at(f"{procfs}/{pid}", strict)


def _uid_at(where: str, strict: bool = False) -> int:
    try:
        for line in _read(f"{where}/status").splitlines():
            if line.startswith(b"Uid:"):
                return int(line.split()[1])
    except OSError as exc:
        _check(exc, strict)
    except (ValueError, IndexError):
        pass
    return -1


def file_id(st: os.stat_result) -> int:
    """Device and inode of a file as one number."""
    return st.st_dev << 64 | st.st_ino


def _exe_facts(exe_link: str) -> tuple[bool, int]:
    """(whether the running executable is owned by root and writable by no one else, its
    file_id), from one stat through the link: the file itself, whatever its path became."""
    try:
        st = os.stat(exe_link)
    except OSError:
        return False, 0
    return st.st_uid == 0 and not st.st_mode & 0o022, file_id(st)


def replaced(pid: int, exe: str, procfs: str = "/proc") -> bool:
    """Whether a regular file stands again at the path of a deleted executable (an
    upgrade wrote a new one), looked up inside the process's root without following it."""
    try:
        return stat.S_ISREG(os.lstat(f"{procfs}/{pid}/root{exe}").st_mode)
    except OSError:
        return False


def _payload(proc: Proc, procfs: str) -> None:
    """Fill in what a loader or interpreter process runs, and whether it is still there."""
    found = launch.parse(proc.exe, proc.cmdline)
    if found is not None and found.path:
        path = launch.absolute(found.path, proc.cwd)
        proc.payload, proc.payload_deleted = launch.resolve(proc.pid, path, procfs)
        if proc.payload_deleted and "/" not in found.path:
            # not in the working directory: a shell looks such a name up in PATH
            proc.payload, proc.payload_deleted = found.path, False


def live_task(pid: int, procfs: str = "/proc") -> int | None:
    """A thread of `pid` other than its leader that has not exited, if any: the process
    lives on after its main thread exited (pthread_exit in main)."""
    try:
        tids = os.listdir(f"{procfs}/{pid}/task")
    except OSError:
        return None
    for name in tids:
        if not name.isdigit() or int(name) == pid:
            continue
        try:
            state = parse_stat(_read_stat(f"{procfs}/{pid}/task/{name}/stat"))[1][0]
        except (OSError, ValueError, IndexError):
            continue
        if state not in (b"Z", b"X", b"x"):
            return int(name)
    return None


def _cgroup(pid: int, procfs: str) -> str:
    try:
        lines = _read(f"{procfs}/{pid}/cgroup").decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return lines[-1].split(":", 2)[-1] if lines else ""


def _shared(text: str) -> str:
    """One copy of a short string however many processes carry it (10,000 workers of one
    program share their exe, cwd, cgroup and arguments); interned strings still die with
    their last user."""
    return sys.intern(text) if len(text) <= SHARED_CHARS else text


def read_proc(
    pid: int, procfs: str = "/proc", table: ProcTable | None = None, strict: bool = False
) -> Proc | None:
    """All facts of one process, ancestors included; None if it vanished mid-read or has
    no image (zombies, kernel threads); `strict`: ProcReadError if a resource ran out."""
    st = read_stat(pid, procfs, strict)
    if st is None:
        return None
    comm, ppid, start, _, tty_nr = st
    try:
        raw = _read(f"{procfs}/{pid}/cmdline")
    except OSError as exc:
        _check(exc, strict)
        return None
    cmdline = [_shared(a.decode("utf-8", "surrogateescape")) for a in raw.split(b"\0")]
    if cmdline and cmdline[-1] == "":
        cmdline.pop()
    exe = _readlink(f"{procfs}/{pid}/exe")
    where = f"{procfs}/{pid}"
    if not raw and not exe:
        # a zombie or a kernel thread has no image, nothing to judge; a leader that
        # exited while its threads run on is read through one of them
        tid = live_task(pid, procfs)
        if tid is None:
            return None
        where = f"{procfs}/{pid}/task/{tid}"
        raw = _read_or_empty(f"{where}/cmdline")
        cmdline = [_shared(a.decode("utf-8", "surrogateescape")) for a in raw.split(b"\0")]
        if cmdline and cmdline[-1] == "":
            cmdline.pop()
        exe = _readlink(f"{where}/exe")
    deleted = exe.endswith(" (deleted)")
    if deleted:
        exe = exe[: -len(" (deleted)")]
    uid = _uid_at(where, strict)
    trusted, exe_id = _exe_facts(f"{where}/exe")
    proc = Proc(
        pid=pid,
        ppid=ppid,
        name=_shared(comm),
        exe=_shared(exe),
        cmdline=cmdline,
        user=user_name(uid) if uid >= 0 else "",
        start_time=start,
        uid=uid,
        cwd=_shared(_readlink(f"{where}/cwd")),
        exe_deleted=deleted,
        tty=tty_nr != 0,
        cgroup=_shared(_cgroup(pid, procfs)),
        argv0=cmdline[0] if cmdline else "",
        exe_replaced=deleted and replaced(pid, exe, procfs),
        exe_trusted=trusted,
        exe_id=exe_id,
        leader_exited=where != f"{procfs}/{pid}",
    )
    _payload(proc, procfs)
    # a process that exited during the reads has a stat we can no longer confirm
    again = read_stat(pid, procfs, strict)
    if again is None or again[2] != start:
        return None
    proc.ancestors = _ancestors(ppid, procfs, table)
    return proc


def _ancestors(ppid: int, procfs: str, table: ProcTable | None) -> list[Ancestor]:
    out: list[Ancestor] = []
    seen: set[int] = set()
    pid = ppid
    while pid > 0 and pid not in seen and len(out) < MAX_ANCESTORS:
        seen.add(pid)
        cached = table.procs.get(pid) if table else None
        if cached is not None:
            out.append(Ancestor(pid, cached.name, cached.exe))
            out.extend(a for a in cached.ancestors[: MAX_ANCESTORS - len(out)])
            break
        st = read_stat(pid, procfs)
        if st is None:
            break
        exe = _readlink(f"{procfs}/{pid}/exe").removesuffix(" (deleted)")
        out.append(Ancestor(pid, st[0], exe))
        pid = st[1]
    return out


class Changes:
    """The pids whose table entry was added, replaced or dropped since the last `take`."""

    __slots__ = ("__weakref__", "pids")

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def take(self) -> set[int]:
        """Empty the set; safe while the loop thread adds to it."""
        out: set[int] = set()
        with contextlib.suppress(KeyError):
            while True:
                out.add(self.pids.pop())
        return out


class ProcTable:
    """Cache of process facts keyed by pid and checked against start time."""

    def __init__(self, procfs: str = "/proc") -> None:
        self.procfs = procfs
        self.procs: dict[int, Proc] = {}
        self.watchers: weakref.WeakSet[Changes] = weakref.WeakSet()
        self.runners: weakref.WeakSet[Changes] = weakref.WeakSet()
        self.complete = False  # True while the procs collector keeps every process here

    def changes(self) -> Changes:
        """A set the table fills with each pid whose entry changes, for as long as it lives."""
        watch = Changes()
        self.watchers.add(watch)
        return watch

    def activity(self) -> Changes:
        """A set the table fills with each pid seen running (it used CPU, forked, started
        a thread), for as long as it lives: what may have changed without an exec."""
        watch = Changes()
        self.runners.add(watch)
        return watch

    def ran(self, pid: int) -> None:
        for watch in self.runners:
            watch.pids.add(pid)

    def _changed(self, pid: int) -> None:
        for watch in self.watchers:
            watch.pids.add(pid)

    def get(self, pid: int, strict: bool = False) -> Proc | None:
        """Cached facts, refreshed when the pid was reused; None if gone; `strict` raises
        ProcReadError when a read failed for lack of a resource (fds, memory)."""
        cached = self.procs.get(pid)
        if cached is not None:
            st = read_stat(pid, self.procfs, strict)
            if st is not None and same_start(st[2], cached.start_time):
                return cached
            self.procs.pop(pid, None)
            self._changed(pid)
        proc = read_proc(pid, self.procfs, self, strict)
        if proc is not None:
            self.procs[pid] = proc
            self._changed(pid)
        return proc

    def touch(self, pid: int) -> None:
        """Mark a cached process as just active (it used CPU): `recent` lists it first."""
        proc = self.procs.pop(pid, None)
        if proc is not None:
            self.procs[pid] = proc
        self.ran(pid)

    def recent(self) -> list[int]:
        """Cached pids, the most recently read or active first; safe from other threads."""
        try:
            return list(reversed(self.procs))
        except RuntimeError:  # changed by the loop thread meanwhile
            return []

    def lookup(self, pid: int) -> Proc | None:
        """Cached facts only, no procfs reads (for hot paths)."""
        return self.procs.get(pid)

    def add(self, proc: Proc) -> None:
        self.procs[proc.pid] = proc
        self._changed(proc.pid)

    def forget(self, pid: int) -> Proc | None:
        proc = self.procs.pop(pid, None)
        if proc is not None:
            self._changed(pid)
        return proc

    def cmdline_chain(self, proc: Proc) -> list[Proc]:
        """The process and whichever of its ancestors are cached, nearest first."""
        chain = [proc]
        for a in proc.ancestors:
            p = self.procs.get(a.pid)
            if p is not None:
                chain.append(p)
        return chain
