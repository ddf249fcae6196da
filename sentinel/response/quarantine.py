"""Quarantine: move a file to state_dir/quarantine/<sha256> (mode 0000) with a manifest.

Never a file of an installed package or one in the system's binary and library
directories; for an interpreter the script it runs is the artifact, not the interpreter.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass
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

    def put(self, path: str, incident: str, max_size: int) -> Entry:
        """Move `path` into the vault; never follows a symlink, only regular files."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise QuarantineError(f"{path}: {exc.strerror}") from None
        tmp = os.path.join(self.root, f".incoming-{os.getpid()}-{time.monotonic_ns()}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise QuarantineError(f"{path}: not a regular file")
            if st.st_size > max_size:
                raise QuarantineError(f"{path}: {st.st_size} bytes is over the {max_size} cap")
            digest = hashlib.sha256()
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(out, "wb") as f:
                while chunk := os.read(fd, 1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
            sha = digest.hexdigest()
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise QuarantineError(f"{path}: replaced while being quarantined")
            os.unlink(path)  # first: if it may not be removed, nothing is left in the vault
            os.chmod(tmp, 0)
            os.replace(tmp, os.path.join(self.root, sha))  # same content twice: one copy
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)
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
        try:
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise QuarantineError(f"{path}: {exc.strerror}") from None
        with os.fdopen(out, "wb") as f, open(src, "rb") as data:
            while chunk := data.read(1 << 20):
                f.write(chunk)
            os.fchown(f.fileno(), entry.uid, entry.gid)
            os.fchmod(f.fileno(), entry.mode)
        os.utime(path, (entry.mtime, entry.mtime), follow_symlinks=False)
