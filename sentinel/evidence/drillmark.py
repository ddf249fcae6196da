"""How the agent tells drill activity from the real thing: a registry only root can write.

`sentinel drill` writes `state_dir/drill.json` (0600, owned by the agent's user) listing
the processes it started (pid and start time) and the paths it touches, and an expiry. A
finding whose process (or a live ancestor) or file is listed there, before the expiry, is
marked `drill: true` and its summary tagged [DRILL]; a pid counts only with its start time,
so a process handed a drill pid after the drill's ended is not the drill's. A registry
that is not a regular file owned by the agent's user with mode 0600 is ignored, so a
watched process without root cannot mark its own work.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field

from sentinel.core.model import Finding, same_start
from sentinel.core.proctable import read_stat

log = logging.getLogger("sentinel.drill")

FILE = "drill.json"
TAG = "[DRILL]"
MAX_BYTES = 1024 * 1024


def path_of(state_dir: str) -> str:
    return os.path.join(state_dir, FILE)


@dataclass
class Marks:
    procs: dict[int, float] = field(default_factory=dict)  # pid -> start time (epoch)
    paths: list[str] = field(default_factory=list)
    until: float = 0.0


def read(path: str) -> Marks | None:
    """The registry at `path` if it is trustworthy and readable, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            log.warning("ignoring %s: not a 0600 file owned by uid %d", path, os.geteuid())
            return None
        doc = json.loads(os.read(fd, MAX_BYTES))
        return Marks(
            procs={int(pid): float(start) for pid, start in doc.get("procs", [])},
            paths=[str(p) for p in doc.get("paths", [])],
            until=float(doc.get("until", 0)),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    finally:
        os.close(fd)


def write(path: str, marks: Marks) -> None:
    """Replace the registry atomically (0600)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    doc = {"procs": sorted(marks.procs.items()), "paths": marks.paths, "until": marks.until}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(doc).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Registry:
    """The engine's view of the registry, re-read only when the file changes."""

    def __init__(self, state_dir: str, procfs: str = "/proc") -> None:
        self.path = path_of(state_dir)
        self.procfs = procfs
        self._sig: tuple[int, int, int] | None = None
        self._marks: Marks | None = None

    def current(self) -> Marks | None:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            self._sig, self._marks = None, None
            return None
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig != self._sig:
            self._sig, self._marks = sig, read(self.path)
        return self._marks

    def matches(self, finding: Finding) -> bool:
        marks = self.current()
        if marks is None or time.time() > marks.until:
            return False
        p = finding.process
        if p is not None:
            if p.pid in marks.procs and same_start(p.start_time, marks.procs[p.pid]):
                return True
            for a in p.ancestors:  # ancestors carry no start time: the live one's is read
                st = read_stat(a.pid, self.procfs) if a.pid in marks.procs else None
                if st is not None and same_start(st[2], marks.procs[a.pid]):
                    return True
        f = finding.file
        return f is not None and any(
            f.path == m or f.path.startswith(m.rstrip("/") + "/") for m in marks.paths
        )
