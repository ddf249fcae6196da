"""Replay recorded events (JSONL) through the real engine with no collectors running.

A record is {"type": "ProcExec" | "NetConn" | "FileChange" | "FlowPayload", ...} with the
event's fields; processes and connections are written as their dataclass fields, payload
bytes as hex (`data_hex`). Detectors, dedup and
incident folding run as in the agent; the findings are returned instead of delivered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from sentinel.core.config import Config
from sentinel.core.events import (
    Event,
    FileChange,
    FlowPayload,
    Indicators,
    NetConn,
    OwnerFacts,
    ProcExec,
)
from sentinel.core.model import Ancestor, Connection, Finding, Proc

EVENT_TYPES: dict[str, type[Event]] = {
    t.__name__: t for t in (ProcExec, NetConn, FileChange, FlowPayload)
}


# Proc fields added after the golden records were written: written only when set
LATER_PROC_FIELDS = (
    "payload",
    "payload_deleted",
    "exe_replaced",
    "exe_trusted",
    "exe_id",
    "leader_exited",
)


def proc_from(data: dict[str, Any]) -> Proc:
    fields = dict(data)
    fields["ancestors"] = [Ancestor(**a) for a in fields.get("ancestors", [])]
    return Proc(**fields)


def decode(record: dict[str, Any]) -> Event:
    """The event a JSONL record describes; KeyError/TypeError on a malformed record."""
    data = {k: v for k, v in record.items() if k != "type"}
    etype = EVENT_TYPES[record["type"]]
    if "proc" in data and data["proc"] is not None:
        data["proc"] = proc_from(data["proc"])
    if "conn" in data:
        conn = data["conn"]
        data["conn"] = Connection(**{**conn, "aliases": tuple(conn.get("aliases", ()))})
    if "data_hex" in data:
        data["data"] = bytes.fromhex(data.pop("data_hex"))
    if data.get("owner") is not None:
        data["owner"] = owner_from(data["owner"])
    return etype(**data)


def owner_from(data: dict[str, Any]) -> OwnerFacts:
    hidden = tuple(
        Indicators(
            h["source"],
            tuple(h.get("urls", ())),
            tuple(h.get("pools", ())),
            tuple((kind, addr) for kind, addr in h.get("wallets", ())),
            tuple(h.get("names", ())),
        )
        for h in data.get("hidden", ())
    )
    return OwnerFacts(tuple(data.get("stdio", ())), str(data.get("stdin", "")), hidden)


def encode(event: Event) -> dict[str, Any]:
    """The JSONL record of an event (the inverse of decode)."""
    record = {"type": type(event).__name__, **dataclasses.asdict(event)}
    if isinstance(record.get("proc"), dict):
        for key in LATER_PROC_FIELDS:  # left out at their default, as older records were
            if not record["proc"].get(key):
                record["proc"].pop(key, None)
    if isinstance(record.get("conn"), dict) and not record["conn"]["aliases"]:
        del record["conn"]["aliases"]  # as records without CNAME targets were written
    if "owner" in record and record["owner"] is None:
        del record["owner"]  # as records without owner facts were written
    if isinstance(record.get("data"), bytes):
        record["data_hex"] = record.pop("data").hex()
    return record


class _Collect:
    """A sink that keeps what the engine would deliver."""

    name = type = "replay"
    notifies = True  # what would be notified: folded findings are not kept

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def wants(self, finding: Finding) -> bool:
        return True

    def submit(self, finding: Finding) -> None:
        self.findings.append(dataclasses.replace(finding))  # as it was when delivered

    def resolve(self, finding: Finding) -> None:
        """Resolutions are not findings: nothing to keep."""


def replay(cfg: Config, events: Iterable[Event]) -> list[Finding]:
    """Findings the engine publishes for the events, in order, with no collector started."""
    from sentinel.engine import Engine

    engine = Engine(cfg)
    sink = _Collect()
    engine.sinks = [sink]  # type: ignore[list-item]
    for event in events:
        engine.handle_now(event)
    return sink.findings
