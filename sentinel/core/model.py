"""Shared vocabulary: severities, categories, process/file/connection facts and findings."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        """Accept 'high', 'HIGH', 3 or a Severity."""
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {value!r} (one of {names})") from None


class Category(StrEnum):
    MINER = "miner"
    NETWORK = "network"
    TUNNEL = "tunnel"
    PERSISTENCE = "persistence"
    EVASION = "evasion"
    WALLET = "wallet"
    CANARY = "canary"
    LOAD = "load"
    GPU = "gpu"
    DAEMON = "daemon"
    INTEGRITY = "integrity"


CMDLINE_CAP = 8192  # characters of argv kept once the rules have judged the whole


def cap_argv(argv: list[str], limit: int = CMDLINE_CAP) -> tuple[list[str], str, int] | None:
    """(the first `limit` characters of argv, sha256 and length in bytes of the whole,
    NUL-joined) when argv is longer than `limit`; None when it fits."""
    if sum(len(a) + 1 for a in argv) <= limit:
        return None
    whole = "\0".join(argv).encode("utf-8", "surrogateescape")
    kept: list[str] = []
    room = limit
    for arg in argv:
        if room <= 0:
            break
        kept.append(arg[:room])
        room -= len(arg) + 1
    return kept, hashlib.sha256(whole).hexdigest(), len(whole)


@dataclass(frozen=True, slots=True)
class Ancestor:
    pid: int
    name: str
    exe: str

    def to_record(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "exe": self.exe}


@dataclass(slots=True)
class Proc:
    """What is known of one process, read once per (pid, start_time)."""

    pid: int
    ppid: int
    name: str
    exe: str
    cmdline: list[str]
    user: str
    start_time: float
    ancestors: list[Ancestor] = field(default_factory=list)
    uid: int = -1
    cwd: str = ""
    exe_deleted: bool = False
    tty: bool = False
    cgroup: str = ""
    argv0: str = ""
    payload: str = ""  # what a loader or interpreter runs (core/launch.py), made absolute
    payload_deleted: bool = False  # that payload is gone from disk (or a memfd)
    exe_replaced: bool = False  # exe_deleted, and a new file stands at its path
    exe_trusted: bool = False  # the executable is root's and writable by no one else
    exe_id: int = 0  # device and inode of the executable when read (proctable.file_id)
    leader_exited: bool = False  # the main thread exited, other threads run on
    cmdline_sha256: str = ""  # set with cmdline_len once cmdline was capped
    cmdline_len: int = 0

    @property
    def key(self) -> tuple[int, float]:
        return (self.pid, self.start_time)

    def cap_cmdline(self) -> None:
        """Keep CMDLINE_CAP characters of argv (plus the whole's sha256 and length) once
        the rules have judged it, so a huge argv is not held in memory or findings."""
        capped = cap_argv(self.cmdline)
        if capped is not None:
            self.cmdline, self.cmdline_sha256, self.cmdline_len = capped
            self.argv0 = self.argv0[:CMDLINE_CAP]

    def to_record(self) -> dict[str, Any]:
        """The record's process object; a command line over CMDLINE_CAP comes capped,
        with `cmdline_sha256` and `cmdline_len` (bytes) of the whole."""
        capped = None if self.cmdline_sha256 else cap_argv(self.cmdline)
        cmdline, digest, length = capped or (self.cmdline, self.cmdline_sha256, self.cmdline_len)
        record = {
            "pid": self.pid,
            "ppid": self.ppid,
            "name": self.name,
            "exe": self.exe,
            "cmdline": list(cmdline),
            "user": self.user,
            "start_time": rfc3339(self.start_time),
            "ancestors": [a.to_record() for a in self.ancestors],
        }
        if digest:
            record["cmdline_sha256"], record["cmdline_len"] = digest, length
        return record


@dataclass(frozen=True, slots=True)
class FileFacts:
    path: str
    sha256: str | None
    size: int

    def to_record(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class Connection:
    laddr: str
    raddr: str
    rport: int
    proto: str
    domain: str | None = None
    aliases: tuple[str, ...] = ()  # the CNAME targets DNS gave from `domain` to the address

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "laddr": self.laddr,
            "raddr": self.raddr,
            "rport": self.rport,
            "domain": self.domain,
            "proto": self.proto,
        }
        if self.aliases:
            record["aliases"] = list(self.aliases)
        return record


START_SLACK = 0.05  # start times read from procfs carry clock-tick rounding


def same_start(a: float, b: float) -> bool:
    """Whether two start times read for one pid belong to the same process."""
    return abs(a - b) < START_SLACK


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC with millisecond precision, e.g. 2026-01-02T03:04:05.678Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_HOST = socket.gethostname()


@dataclass(slots=True)
class Finding:
    rule: str
    category: Category
    severity: Severity
    summary: str
    detector: str
    process: Proc | None = None
    file: FileFacts | None = None
    connection: Connection | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: float = field(default_factory=time.time)
    host: str = _HOST
    subject: str = ""

    def __post_init__(self) -> None:
        if not self.subject:
            self.subject = self.default_subject()

    def default_subject(self) -> str:
        """The thing a finding is about, used to deduplicate repeats of one rule."""
        if self.process is not None:
            return f"pid:{self.process.pid}:{self.process.start_time:.2f}"
        if self.file is not None:
            return f"file:{self.file.path}"
        if self.connection is not None:
            return f"conn:{self.connection.raddr}:{self.connection.rport}"
        return "host"

    @property
    def dedup_key(self) -> tuple[str, str]:
        return (self.rule, self.subject)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": rfc3339(self.time),
            "host": self.host,
            "rule": self.rule,
            "category": str(self.category),
            "severity": str(self.severity),
            "summary": self.summary,
            "detector": self.detector,
            "process": self.process.to_record() if self.process else None,
            "file": self.file.to_record() if self.file else None,
            "connection": self.connection.to_record() if self.connection else None,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class Resolved:
    """A detector's word that the condition behind (rule, subject) has ended."""

    rule: str
    subject: str
