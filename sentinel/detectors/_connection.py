"""Findings about a socket: one catalogue kind's matches on a connection and its owner."""

from __future__ import annotations

from collections.abc import Iterator

from sentinel.core.events import FlowPayload, NetConn
from sentinel.core.model import Finding
from sentinel.detectors import Detector
from sentinel.rules.catalogue import Match


def findings(det: Detector, kind: str, event: NetConn | FlowPayload) -> Iterator[Finding]:
    """Each `kind` rule that holds for the event, as a finding (see `finding`)."""
    for m in det.ctx.catalogue.evaluate(kind, event):
        yield finding(det, m, event)


def finding(det: Detector, m: Match, event: NetConn | FlowPayload) -> Finding:
    """A rule's match as a finding naming the process (when known) and the connection,
    with the remote end in the evidence."""
    conn, proc = event.conn, event.proc
    who = f"{proc.name} (pid {proc.pid})" if proc else "unknown process"
    return Finding(
        rule=m.rule.id,
        category=m.rule.category,
        severity=m.severity,
        summary=f"{who}: {m.summary}",
        detector=det.name,
        process=proc,
        connection=conn,
        evidence={**m.evidence, "raddr": conn.raddr, "rport": conn.rport, "proto": conn.proto},
    )
