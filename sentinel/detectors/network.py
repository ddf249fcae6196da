"""Network rules on new sockets: the catalogue's network rules on each outbound connection."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, NetConn
from sentinel.core.model import Finding
from sentinel.detectors import Detector, register


@register
class NetworkDetector(Detector):
    """Judges each outbound connection by its port, its owner and the names the owner used."""

    name = "network"
    events = (NetConn,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, NetConn):
            return
        conn, proc = event.conn, event.proc
        who = f"{proc.name} (pid {proc.pid})" if proc else "unknown process"
        for m in self.ctx.catalogue.evaluate("network", event):
            yield Finding(
                rule=m.rule.id,
                category=m.rule.category,
                severity=m.severity,
                summary=f"{who}: {m.summary}",
                detector=self.name,
                process=proc,
                connection=conn,
                evidence={
                    **m.evidence,
                    "raddr": conn.raddr,
                    "rport": conn.rport,
                    "proto": conn.proto,
                },
            )
