"""The hash chain of the alert log: `seq` and `prev` on every line, signed checkpoints.

Each line is one JSON object whose `seq` counts up by one and whose `prev` is the sha256
(hex) of the previous line's bytes (without its newline), across rotated files. A
checkpoint line signs (Ed25519) the seq and hash of the line it follows; copies sent off
the box anchor the history before it, so a rewritten chain no longer matches them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sentinel.core.model import rfc3339
from sentinel.evidence import keys

GENESIS = "0" * 64
CHECKPOINT = "checkpoint"
TAIL_READ = 1024 * 1024  # the last line of a log is looked for in its last MiB


def line_hash(line: bytes) -> str:
    """sha256 hex of one log line without its newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def signed_bytes(host: str, seq: int, sha256: str, when: str, kept_from: int | None) -> bytes:
    """What a checkpoint signs: the line it covers (seq and hash), the host, the time and
    the first seq the log files still held (v2; v1 checkpoints have none)."""
    if kept_from is None:
        return f"sentinel-log-checkpoint/v1\n{host}\n{seq}\n{sha256}\n{when}".encode()
    return f"sentinel-log-checkpoint/v2\n{host}\n{seq}\n{sha256}\n{when}\n{kept_from}".encode()


def rotated(path: str) -> list[str]:
    """A log and its rotated files beside it, oldest first (path.N ... path.1, path)."""
    out = [path]
    n = 1
    while os.path.exists(f"{path}.{n}"):
        out.append(f"{path}.{n}")
        n += 1
    return out[::-1]


def first_seq(path: str) -> int | None:
    """The seq of a log file's first line, or None when it has no chained line."""
    try:
        with open(path, "rb") as f:
            line = f.readline(TAIL_READ)
        seq = json.loads(line).get("seq")
    except (OSError, ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def last_line(path: str) -> bytes | None:
    """The last complete line of a file, or None when it has none."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_READ))
            data = f.read()
    except FileNotFoundError:
        return None
    end = data.rfind(b"\n")
    if end < 0:
        return None
    start = data.rfind(b"\n", 0, end) + 1
    return data[start:end]


@dataclass
class Chain:
    """The writer's side: numbers and links lines, makes checkpoints when they are due."""

    key: Ed25519PrivateKey | None
    every_records: int = 1000
    every_seconds: float = 300.0
    host: str = field(default_factory=socket.gethostname)
    seq: int = 0  # the next line's seq
    prev: str = GENESIS
    since_checkpoint: int = 0
    last_checkpoint: float = field(default_factory=time.monotonic)
    kept_from: int = 0  # the first seq the log files hold (rotation drops the oldest)
    rotated: bool = False  # a rotation dropped lines: the next checkpoint is due at once
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def recover(self, path: str) -> None:
        """Continue the chain of the log at `path` (or of its newest rotated file)."""
        for candidate in (path, f"{path}.1"):
            line = last_line(candidate)
            if line is None:
                continue
            self.prev = line_hash(line)
            try:
                seq = json.loads(line).get("seq")
            except (ValueError, AttributeError):
                seq = None
            self.seq = seq + 1 if isinstance(seq, int) and not isinstance(seq, bool) else 0
            return

    def line(self, record: dict[str, Any]) -> bytes:
        """The bytes of the next line for `record` (call `advance` once it is written)."""
        doc = {"seq": self.seq, "prev": self.prev, **record}
        # ASCII escapes keep a record with non-UTF-8 argv bytes (lone surrogates) parseable
        return (json.dumps(doc, default=str) + "\n").encode("ascii")

    def advance(self, data: bytes, counted: bool = True) -> None:
        self.seq += 1
        self.prev = line_hash(data)
        if counted:
            self.since_checkpoint += 1

    def due(self, now: float | None = None) -> bool:
        """Whether a checkpoint should be written now (records since the last one, or time)."""
        if self.key is None or not (self.since_checkpoint or self.rotated):
            return False
        if self.rotated:
            return True
        if self.every_records and self.since_checkpoint >= self.every_records:
            return True
        now = time.monotonic() if now is None else now
        return bool(self.every_seconds) and now - self.last_checkpoint >= self.every_seconds

    def checkpoint(self) -> dict[str, Any]:
        """A signed checkpoint over the last written line (the caller writes it)."""
        assert self.key is not None
        when = rfc3339(time.time())
        covered = self.seq - 1
        sig = self.key.sign(signed_bytes(self.host, covered, self.prev, when, self.kept_from))
        self.since_checkpoint = 0
        self.rotated = False
        self.last_checkpoint = time.monotonic()
        return {
            "id": f"checkpoint-{covered}",
            "type": CHECKPOINT,
            "time": when,
            "host": self.host,
            "covers": {"seq": covered, "sha256": self.prev},
            "kept_from": self.kept_from,
            "key_id": keys.key_id(self.key),
            "sig": keys.b64(sig),
        }


def check_signature(record: dict[str, Any], pub: Ed25519PublicKey) -> bool:
    """Whether a checkpoint record's signature is valid under `pub`."""
    try:
        covers = record["covers"]
        kept = record.get("kept_from")
        msg = signed_bytes(
            str(record["host"]),
            int(covers["seq"]),
            str(covers["sha256"]),
            str(record["time"]),
            None if kept is None else int(kept),
        )
        pub.verify(base64.b64decode(record["sig"], validate=True), msg)
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return False
    return True


@dataclass
class Line:
    path: str
    number: int  # 1-based within its file
    data: bytes
    record: dict[str, Any] | None


@dataclass
class Problem:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class Report:
    files: list[str]
    lines: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    last_seq: int | None = None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def read_lines(paths: list[str]) -> Iterator[Line]:
    for path in paths:
        with open(path, "rb") as f:
            for n, data in enumerate(f, 1):
                try:
                    rec = json.loads(data) if data.endswith(b"\n") else None
                except ValueError:
                    rec = None
                yield Line(path, n, data, rec if isinstance(rec, dict) else None)


def _seq(rec: dict[str, Any] | None) -> int | None:
    seq = rec.get("seq") if rec is not None else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def verify(paths: list[str], pub: Ed25519PublicKey | None) -> Report:
    """Check the chain over `paths` (oldest first) and every checkpoint; the first bad line."""
    report = Report(files=paths)
    prev_line: Line | None = None
    first: Line | None = None
    kept: tuple[int, int] | None = None  # (seq of the last checkpoint, the kept_from it signed)
    for cur in read_lines(paths):
        report.lines += 1
        problem = _check(prev_line, cur, pub)
        if problem is not None:
            report.problem = problem
            return report
        assert cur.record is not None
        report.last_seq = cur.record["seq"]
        if cur.record.get("type") == CHECKPOINT:
            report.checkpoints += 1
            report.last_checkpoint_seq = cur.record["seq"]
            if isinstance(cur.record.get("kept_from"), int):
                kept = (cur.record["seq"], cur.record["kept_from"])
        first = first or cur
        prev_line = cur
    if first is not None and first.record is not None and kept and first.record["seq"] > kept[1]:
        report.problem = Problem(
            first.path,
            first.number,
            f"history removed: the checkpoint at seq {kept[0]} says the log kept seq "
            f"{kept[1]} onwards, but it starts at seq {first.record['seq']}",
        )
    return report


def _check(prev: Line | None, cur: Line, pub: Ed25519PublicKey | None) -> Problem | None:
    here = Problem(cur.path, cur.number, "")
    if not cur.data.endswith(b"\n"):
        here.reason = "truncated: the last line has no newline"
        return here
    rec = cur.record
    seq = _seq(rec)
    if rec is None:
        here.reason = "not a JSON object"
        return here
    if seq is None or not isinstance(rec.get("prev"), str):
        here.reason = "no 'seq' and 'prev': not a chained record (inserted?)"
        return here
    if prev is None:
        if seq == 0 and rec["prev"] != GENESIS:
            here.reason = "seq 0 does not start from the genesis hash"
            return here
    else:
        assert prev.record is not None
        pseq = prev.record["seq"]
        if seq != pseq + 1:
            if seq == pseq and rec["prev"] == prev.record["prev"]:
                return Problem(prev.path, prev.number, f"seq {pseq} appears twice: line inserted")
            how = "removed before it" if seq > pseq + 1 else "reordered or inserted"
            here.reason = f"seq {seq} follows seq {pseq}: records {how}"
            return here
        if rec["prev"] != line_hash(prev.data):
            # consecutive numbers but a broken link: the line before was changed
            return Problem(
                prev.path, prev.number, f"edited: its hash is not the one seq {seq} recorded"
            )
    if rec.get("type") == CHECKPOINT:
        covers = rec.get("covers") or {}
        if prev is not None and (
            covers.get("seq") != seq - 1 or covers.get("sha256") != rec["prev"]
        ):
            here.reason = "checkpoint does not cover the line before it"
            return here
        if pub is not None and not check_signature(rec, pub):
            here.reason = "checkpoint signature does not verify with this public key"
            return here
    return None
