"""Who may be touched: process identity (start time + executable inode), scope, protection."""

from __future__ import annotations

import os
import pwd
import signal
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from sentinel.core.paths import under
from sentinel.core.proctable import boot_time, parse_stat

PF_KTHREAD = 0x00200000
SYSTEM_DIRS = (
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
)
# protected by name only when the executable sits in a system directory: a miner renamed
# "sshd" in /tmp is not protected
SYSTEM_PROGRAMS = frozenset({"init", "sshd", "sshd-session", "login", "agetty", "getty"})
RUNTIMES = frozenset(
    {"containerd", "dockerd", "docker-proxy", "runc", "crun", "conmon", "podman", "crio", "kubelet"}
)


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes a pid the same process: its start (clock ticks) and executable inode."""

    pid: int
    start_ticks: int
    exe_dev: int
    exe_ino: int

    @property
    def start_time(self) -> float:
        from sentinel.core.proctable import CLK_TCK

        return boot_time() + self.start_ticks / CLK_TCK

    def to_record(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "exe_ino": self.exe_ino}


@dataclass(slots=True)
class Info:
    """Facts about one process read from /proc/PID/stat and status."""

    pid: int
    ppid: int
    comm: str
    state: str
    flags: int
    start_ticks: int


def read_info(pid: int) -> Info | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            comm, rest = parse_stat(f.read())
        return Info(pid, int(rest[1]), comm, rest[0].decode(), int(rest[6]), int(rest[19]))
    except (OSError, ValueError, IndexError):
        return None


def identity(pid: int) -> Identity | None:
    """The identity of the process now holding `pid`; None if gone or without an image."""
    info = read_info(pid)
    if info is None or info.flags & PF_KTHREAD:
        return None
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return Identity(pid, info.start_ticks, st.st_dev, st.st_ino)


def still(ident: Identity) -> bool:
    """Whether `ident.pid` is still the same process (a recycled or re-exec'd pid is not)."""
    return identity(ident.pid) == ident


def uid_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def cgroups_of(pid: int) -> dict[str, str]:
    """Controller (or '' for v2, 'name=systemd') to cgroup path."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for ctl in parts[1].split(",") or [""]:
                        out[ctl] = parts[2]
    except OSError:
        pass
    return out


@lru_cache(maxsize=64)
def resolve_uid(user: str) -> int:
    """A user name or numeric uid; ValueError names an unknown user."""
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"unknown user {user!r}") from None


@dataclass(frozen=True, slots=True)
class Scope:
    """The user, cgroup or systemd unit under test; kind '' means no scope."""

    kind: str = ""
    value: str = ""

    def __bool__(self) -> bool:
        return bool(self.kind)

    def __str__(self) -> str:
        return f"{self.kind} {self.value}" if self.kind else "none"

    def contains(self, pid: int) -> bool:
        if not self.kind:
            return True
        if self.kind == "user":
            return uid_of(pid) == resolve_uid(self.value)
        groups = cgroups_of(pid)
        if self.kind == "cgroup":
            return any(under(path, self.value) for path in groups.values())
        paths = [groups.get("", ""), groups.get("name=systemd", "")]
        return any(self.value in path.split("/") for path in paths)


def ancestors_of(pid: int) -> set[int]:
    """`pid` and every process above it."""
    seen: set[int] = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        info = read_info(pid)
        if info is None:
            break
        pid = info.ppid
    return seen


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _host_file(pid: int, exe: str) -> bool:
    """Whether `exe` names the host's own file: a process in another mount namespace (a
    container, `unshare -m` with a bind mount) shows a path that may be a look-alike."""
    if exe.endswith(" (deleted)"):  # upgraded under a running daemon: trust its own view only
        try:
            return os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino
        except OSError:
            return False
    try:
        a, b = os.stat(exe), os.stat(f"/proc/{pid}/exe")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@dataclass
class Guard:
    """Refuses protected processes and, with a scope, everything outside it."""

    scope: Scope = field(default_factory=Scope)
    admin_uids: frozenset[int] = frozenset()
    own: set[int] = field(default_factory=lambda: ancestors_of(os.getpid()))

    def refuse(self, pid: int, info: Info | None = None) -> str:
        """Why `pid` must not be touched, or '' if it may be."""
        info = info or read_info(pid)
        if info is None:
            return "gone"
        if pid in (1, 2) or info.flags & PF_KTHREAD or info.ppid == 2:
            return "protected: pid 1 or kernel thread"
        if pid in self.own:
            return "protected: sentinel itself or its ancestor"
        exe = _exe(pid)
        name = os.path.basename(exe.removesuffix(" (deleted)"))
        system = any(under(exe, d) for d in SYSTEM_DIRS) and _host_file(pid, exe)
        if system and (name in SYSTEM_PROGRAMS or name.startswith("systemd")):
            return f"protected: system process {name}"
        inside = bool(self.scope) and self.scope.contains(pid)
        if self.scope and not inside:
            return f"outside scope {self.scope}"
        runtime = name in RUNTIMES or name.startswith("containerd-shim")
        if system and runtime and not inside:
            return f"protected: container runtime {name}"
        if self.admin_uids and uid_of(pid) in self.admin_uids:
            return "protected: admin user"
        return ""


def children_map() -> dict[int, list[int]]:
    """Parent pid to child pids, from one pass over /proc."""
    kids: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_info(int(name))
            if info is not None:
                kids[info.ppid].append(info.pid)
    return kids


def descendants(roots: Iterable[int], kids: dict[int, list[int]] | None = None) -> list[int]:
    """The roots and every process below them, parents before children."""
    kids = children_map() if kids is None else kids
    order: list[int] = []
    seen: set[int] = set()
    queue = list(roots)
    while queue:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        order.append(pid)
        queue.extend(kids.get(pid, ()))
    return order


def scope_members(scope: Scope) -> list[int]:
    """Every process in the scope, parents before children."""
    pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    members = {p for p in pids if scope.contains(p)}
    kids = children_map()
    tops = [p for p in members if (i := read_info(p)) is not None and i.ppid not in members]
    return [p for p in descendants(tops, kids) if p in members]


class Held:
    """A process pinned by a pidfd: signals reach it and only it, after an identity check."""

    def __init__(self, ident: Identity, fd: int) -> None:
        self.ident = ident
        self.fd = fd

    @classmethod
    def open(cls, ident: Identity) -> Held | None:
        """Pin `ident`; None when the pid no longer is that process."""
        try:
            fd = os.pidfd_open(ident.pid)
        except OSError:
            return None
        if not still(ident):  # the pid was recycled between the decision and the pidfd
            os.close(fd)
            return None
        return cls(ident, fd)

    def send(self, sig: int) -> str:
        """Signal after an identity check; '' on success, else why not."""
        now = identity(self.ident.pid)
        if now is None:
            return "exited"
        if now != self.ident:
            return "identity changed"
        try:
            signal.pidfd_send_signal(self.fd, sig)
        except ProcessLookupError:
            return "exited"
        except OSError as exc:
            return f"signal failed: {exc.strerror}"
        return ""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
