"""What one process tree (or one user's processes) did, from the recorder and the alert log."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sentinel.evidence import chain, recorder

FILE_SLACK = 2.0  # seconds after a tree's last event in which a file change may be its own
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
SPAN = 3600.0  # how far back a timeline looks by default (`--since 1h`)


def parse_span(text: str) -> float:
    """'90', '30s', '10m', '2h', '1d' into seconds; ValueError otherwise."""
    m = _SPAN.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 10m, 2h, 1d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def record_time(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()


def alert_records(log_path: str) -> Iterable[dict[str, Any]]:
    """Every finding in the alert log and its rotated files, oldest first (checkpoints skipped)."""
    for line in chain.read_lines([p for p in chain.rotated(log_path) if os.path.exists(p)]):
        rec = line.record
        if rec is not None and rec.get("type") != chain.CHECKPOINT and "rule" in rec:
            yield rec


@dataclass
class Entry:
    time: float
    kind: str
    pid: int | None
    ppid: int | None
    depth: int
    process: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "kind": self.kind,
            "pid": self.pid,
            "ppid": self.ppid,
            "depth": self.depth,
            "process": self.process,
            "detail": self.detail,
            **{k: v for k, v in self.data.items() if k not in {"time", "kind", "pid", "ppid"}},
        }


def _detail(row: recorder.Row) -> str:
    d = row.data
    if row.kind == "exec":
        return " ".join(d.get("argv") or [d.get("exe", "")]) + (
            f"  (cwd {d['cwd']})" if d.get("cwd") else ""
        )
    if row.kind in ("connect", "listen"):
        where = d.get("domain") or d.get("raddr")
        return f"{d.get('proto', '')} {where}:{d.get('rport')} {d.get('state', '')}".strip()
    if row.kind == "file":
        return f"{d.get('change')} {d.get('path')} ({d.get('role')})"
    if row.kind == "access":
        return f"{d.get('how')} {d.get('path')}"
    if row.kind == "exit":
        return "exited"
    return json.dumps(d, default=str)


def build(
    db: str,
    log_path: str,
    since: float,
    pid: int | None = None,
    user: str | None = None,
    redact: Callable[[list[str]], list[str]] | None = None,
) -> list[Entry]:
    """The subject tree's events in time order: pid and its descendants, or a user's trees;
    `redact` rewrites each recorded argv first."""
    rows = list(recorder.query(db, since))
    if redact is not None:
        for row in rows:
            if isinstance(row.data.get("argv"), list):
                row.data["argv"] = redact([str(a) for a in row.data["argv"]])
    tree: set[int] = set()
    parent: dict[int, int | None] = {}
    names: dict[int, str] = {}
    for row in rows:
        if row.kind != "exec" or row.pid is None:
            continue
        root = (pid is not None and row.pid == pid) or (user is not None and row.user == user)
        if root or row.ppid in tree:
            tree.add(row.pid)
        if row.pid in tree:
            parent[row.pid] = row.ppid
            names[row.pid] = str(row.data.get("name") or row.data.get("exe", ""))
    if pid is not None:
        tree.add(pid)

    def depth(p: int | None) -> int:
        n, seen = 0, set()
        while p is not None and p in parent and parent[p] in tree and p not in seen:
            seen.add(p)
            p = parent[p]
            n += 1
        return n

    entries: list[Entry] = []
    for row in rows:
        if row.pid in tree:
            entries.append(
                Entry(
                    row.time,
                    row.kind,
                    row.pid,
                    parent.get(row.pid, row.ppid),
                    depth(row.pid),
                    names.get(row.pid, str(row.data.get("name", ""))),
                    _detail(row),
                    row.to_record(),
                )
            )
    if entries:
        first, last = entries[0].time, entries[-1].time + FILE_SLACK
        for row in rows:
            if row.kind == "file" and first <= row.time <= last:
                entries.append(
                    Entry(
                        row.time,
                        "file",
                        None,
                        None,
                        0,
                        "(pid unknown)",
                        _detail(row),
                        row.to_record(),
                    )
                )
    for rec in alert_records(log_path):
        proc = rec.get("process") or {}
        t = record_time(rec)
        if proc.get("pid") in tree and t >= since:
            detail = f"{rec.get('severity')} {rec.get('rule')}: {rec.get('summary')}"
            entries.append(
                Entry(
                    t,
                    "finding",
                    proc["pid"],
                    proc.get("ppid"),
                    depth(proc["pid"]),
                    proc.get("name", ""),
                    detail,
                    {"id": rec.get("id"), "rule": rec.get("rule")},
                )
            )
    entries.sort(key=lambda e: e.time)
    return entries


def of_incident(
    db: str,
    log_path: str,
    record: dict[str, Any],
    span: float = SPAN,
    redact: Callable[[list[str]], list[str]] | None = None,
) -> list[Entry]:
    """The timeline of a finding's process tree (`sentinel timeline --incident`, and the
    forensics bundle's timeline.json): from `span` before the finding, or before now."""
    since = min(time.time() - span, record_time(record) - span)
    return build(db, log_path, since, pid=int(record["process"]["pid"]), redact=redact)


def incident(log_path: str, incident_id: str) -> dict[str, Any] | None:
    """The alert record with this id (finding id), if the log still has it."""
    for rec in alert_records(log_path):
        if rec.get("id") == incident_id:
            return rec
    return None
