"""Quarantine: move a file to state_dir/quarantine/<sha256> (mode 0000) with a manifest.

Never a file of an installed package or one in the system's binary and library
directories; for an interpreter the script it runs is the artifact, not the interpreter.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from sentinel.core.model import rfc3339
from sentinel.core.paths import under
from sentinel.core.proctable import user_name
from sentinel.response.targets import SYSTEM_DIRS

INTERPRETER = re.compile(
    r"^(python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node(js)?|bash|sh|dash|zsh|ksh|"
    r"php[0-9.]*|lua[0-9.]*|tclsh[0-9.]*|Rscript)$"
)
# interpreter options whose next argument is not the script
OPTION_ARGS = frozenset({"-W", "-X", "-O", "-I", "-e", "-E", "-r", "--require", "-o"})
INLINE = frozenset({"-c", "-m", "-e", "-E", "--eval", "-p", "--print", "-r"})
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class QuarantineError(Exception):
    """A file could not be quarantined or restored; the message says why."""


class Refused(QuarantineError):
    """A file that must stay where it is (not the process's own, or reached by a symlink)."""


def _open_parent(path: str) -> tuple[int, str]:
    """An O_PATH fd of `path`'s directory, reached without following any symlink, and the
    last name: a directory swapped for a symlink (to /etc, say) is refused, not followed."""
    parts = [p for p in os.path.normpath(path).split("/") if p]
    if not path.startswith("/") or not parts:
        raise Refused(f"{path}: not an absolute file path")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    for name in parts[:-1]:
        try:
            nxt = os.open(
                name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
        except OSError as exc:
            os.close(fd)
            raise Refused(
                f"{path}: {name} is a symlink or not a directory ({exc.strerror})"
            ) from None
        os.close(fd)
        fd = nxt
    return fd, parts[-1]


class Packages:
    """Files that belong to installed Debian packages, read lazily from dpkg's lists."""

    def __init__(self, info_dir: str = "/var/lib/dpkg/info") -> None:
        self.info_dir = info_dir
        self._files: frozenset[str] | None = None

    def owns(self, path: str) -> bool:
        if self._files is None:
            files: set[str] = set()
            for lst in glob.glob(os.path.join(self.info_dir, "*.list")):
                try:
                    with open(lst, encoding="utf-8", errors="replace") as f:
                        files.update(line.rstrip("\n") for line in f)
                except OSError:
                    continue
            self._files = frozenset(files)
        real = os.path.realpath(path)
        return path in self._files or real in self._files


def refuse(path: str, packages: Packages) -> str:
    """Why `path` must stay in place, or '' if it may be quarantined."""
    real = os.path.realpath(path)
    if any(under(path, d) or under(real, d) for d in SYSTEM_DIRS):
        return "in a system binary or library directory"
    if packages.owns(path):
        return "belongs to an installed package"
    return ""


def script_of(argv: list[str], cwd: str) -> str:
    """The script an interpreter runs (absolute), or '' for -c/-m/stdin."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in INLINE:
            return ""
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        i += 2 if arg in OPTION_ARGS else 1
    if i >= len(argv) or argv[i] == "-":
        return ""
    return os.path.normpath(os.path.join(cwd, argv[i]))


def artifacts(exe: str, argv: list[str], cwd: str) -> list[tuple[str, str]]:
    """(path, role) to quarantine for a process: its executable, or its script."""
    exe = exe.removesuffix(" (deleted)")
    if INTERPRETER.match(os.path.basename(exe)):
        script = script_of(argv, cwd)
        return [(script, "script")] if script else []
    return [(exe, "executable")]


@dataclass(frozen=True)
class Artifact:
    """Why a file is wanted and what it must still be when it is moved."""

    role: str  # executable, script or dropped file
    same_as: tuple[int, int] | None = None  # (dev, inode) the process ran
    owner: int | None = None  # the process's uid: never another user's file

    def mismatch(self, st: os.stat_result) -> str:
        """Why the file `st` is not the one wanted, or ''."""
        if self.same_as is not None and (st.st_dev, st.st_ino) != self.same_as:
            return (
                "no longer the file the process ran (replaced, or the process sees another "
                "file there: another mount namespace)"
            )
        if self.owner is not None and st.st_uid != self.owner:
            user = user_name(self.owner)
            return f"owned by {user_name(st.st_uid)}, not by the process's user {user}"
        return ""


@dataclass
class Found:
    """The files a held tree's processes ran, and what is left in place and why."""

    files: dict[str, Artifact] = field(default_factory=dict)
    left: list[dict[str, str]] = field(default_factory=list)


def _seen(pid: int, path: str, role: str) -> tuple[int, int] | None:
    """(dev, inode) of the file the process runs, as the process sees it."""
    where = f"/proc/{pid}/exe" if role == "executable" else f"/proc/{pid}/root{path}"
    try:
        st = os.stat(where)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def found(facts: dict[int, dict[str, Any]]) -> Found:
    """What to quarantine for these processes (`describe` facts), read while they are held:
    the quarantine later moves a path only if it still holds that very file and belongs to
    the process's user, so a renamed exe, a look-alike path in another mount namespace or
    someone else's script run with miner arguments are left alone."""
    out = Found()
    for pid, proc in facts.items():
        exe = proc["exe"]
        arts = artifacts(exe, proc["argv"], proc["cwd"] or "/")
        if not arts or arts[0][1] == "script":
            why = (
                "interpreter: its script is the artifact"
                if arts
                else "interpreter running inline code"
            )
            out.left.append({"path": exe, "why": why})
        for path, role in arts:
            seen = _seen(pid, path, role)
            if seen is None:
                out.left.append({"path": path, "why": f"the process's {role} could not be read"})
            elif path not in out.files:
                art = Artifact(role, seen, proc["uid"])
                try:
                    why = art.mismatch(os.lstat(path))
                except OSError as exc:
                    why = exc.strerror or str(exc)
                if why:
                    out.left.append({"path": path, "why": why})
                else:
                    out.files[path] = art
    return out


@dataclass
class Entry:
    """One quarantined file and where it came from."""

    sha256: str
    path: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    incident: str
    time: float
    also: tuple[str, ...] = ()  # other paths that held the same content

    def to_record(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "path": self.path,
            "size": self.size,
            "mode": f"{self.mode:04o}",
            "owner": user_name(self.uid),
            "uid": self.uid,
            "gid": self.gid,
            "mtime": rfc3339(self.mtime),
            "incident": self.incident,
            "quarantined": rfc3339(self.time),
            **({"also": list(self.also)} if self.also else {}),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], mtime: float, when: float) -> Entry:
        return cls(
            rec["sha256"],
            rec["path"],
            rec["size"],
            int(rec["mode"], 8),
            rec["uid"],
            rec["gid"],
            mtime,
            rec["incident"],
            when,
            tuple(rec.get("also", ())),
        )


class Vault:
    """The quarantine directory: <sha256> (mode 0000) and <sha256>.json (0600) per file."""

    def __init__(self, root: str) -> None:
        self.root = root

    def put(
        self,
        path: str,
        incident: str,
        max_size: int,
        *,
        same_as: tuple[int, int] | None = None,
        owner: int | None = None,
        total: int | None = None,
    ) -> Entry:
        """Move `path` into the vault; never follows a symlink, only regular files. With
        `same_as` the file must be that (dev, inode), with `owner` belong to that uid, and
        with `total` the vault must not grow past that many bytes."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        parent, name = _open_parent(path)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent
            )
        except OSError as exc:
            os.close(parent)
            raise QuarantineError(f"{path}: {exc.strerror}") from None
        tmp = os.path.join(self.root, f".incoming-{os.getpid()}-{time.monotonic_ns()}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise QuarantineError(f"{path}: not a regular file")
            if why := Artifact("", same_as, owner).mismatch(st):
                raise Refused(f"{path}: {why}")
            if st.st_size > max_size:
                raise QuarantineError(f"{path}: {st.st_size} bytes is over the {max_size} cap")
            if total is not None and self.size() + st.st_size > total:
                raise Refused(f"{path}: the quarantine is full ({total} bytes in all)")
            digest = hashlib.sha256()
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(out, "wb") as f:
                while chunk := os.read(fd, 1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
            sha = digest.hexdigest()
            now = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise QuarantineError(f"{path}: replaced while being quarantined")
            os.unlink(name, dir_fd=parent)  # first: if it may not go, the vault keeps nothing
            os.chmod(tmp, 0)
            os.replace(tmp, os.path.join(self.root, sha))  # same content twice: one copy
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
            os.close(parent)
        entry = Entry(
            sha,
            path,
            st.st_size,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_mtime,
            incident,
            time.time(),
        )
        self._write_manifest(entry)
        return entry

    def size(self) -> int:
        """Bytes the vault holds."""
        total = 0
        with os.scandir(self.root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def _write_manifest(self, entry: Entry) -> None:
        rec = {**entry.to_record(), "mtime_epoch": entry.mtime, "time_epoch": entry.time}
        path = os.path.join(self.root, f"{entry.sha256}.json")
        try:
            with open(path) as f:
                first = json.load(f)
            if first["path"] != entry.path:
                first["also"] = sorted({*first.get("also", []), entry.path})
            rec = first
        except (OSError, ValueError, KeyError):
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(rec, f, indent=1)

    def entries(self) -> list[Entry]:
        out = []
        for path in sorted(glob.glob(os.path.join(self.root, "*.json"))):
            try:
                with open(path) as f:
                    rec = json.load(f)
                out.append(Entry.from_record(rec, rec["mtime_epoch"], rec["time_epoch"]))
            except (OSError, ValueError, KeyError) as exc:
                raise QuarantineError(f"{path}: unreadable manifest: {exc}") from None
        return sorted(out, key=lambda e: e.time)

    def restore(self, sha: str) -> Entry:
        """Put a file back where it was, with its mode, owner and mtime."""
        if not SHA256.match(sha):
            raise QuarantineError(f"not a sha256: {sha!r}")
        matches = [e for e in self.entries() if e.sha256 == sha]
        if not matches:
            raise QuarantineError(f"nothing quarantined with sha256 {sha}")
        entry = matches[0]
        src = os.path.join(self.root, sha)
        for path in (entry.path, *entry.also):
            self._put_back(src, path, entry)
        os.unlink(src)
        os.unlink(f"{src}.json")
        return entry

    @staticmethod
    def _put_back(src: str, path: str, entry: Entry) -> None:
        parent, name = _open_parent(path)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(name, flags, 0o600, dir_fd=parent)
        except OSError as exc:
            raise QuarantineError(f"{path}: {exc.strerror}") from None
        finally:
            os.close(parent)
        with os.fdopen(out, "wb") as f, open(src, "rb") as data:
            while chunk := data.read(1 << 20):
                f.write(chunk)
            os.fchown(f.fileno(), entry.uid, entry.gid)
            os.fchmod(f.fileno(), entry.mode)
            f.flush()
            os.utime(f.fileno(), (entry.mtime, entry.mtime))
