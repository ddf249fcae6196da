"""Rules on the first bytes of flows: stratum on any port, DNS-over-HTTPS from non-browsers.

Inputs are the FlowPayload's bytes, its process and its remote end; each decision is a
field extractor in rules/payload.py or an indicator list in rules/intel.py. Pool, tunnel
and dynamic-DNS names from SNI, HTTP Host and DNS answers reach the network detector's
domain rules through Connection.domain (filled by the collectors).
"""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, FlowPayload
from sentinel.core.model import Category, Finding, Severity
from sentinel.detectors import Detector, register
from sentinel.rules import payload

STRATUM = ("network.stratum_protocol", Category.NETWORK, Severity.HIGH)
DOH = ("network.doh_resolver", Category.NETWORK, Severity.LOW)


@register
class TrafficDetector(Detector):
    """Judges the first message of each flow direction by what its bytes say."""

    name = "traffic"
    events = (FlowPayload,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, FlowPayload):
            return
        msg = payload.stratum(event.data)
        if msg is not None:
            verb = "sent" if msg.role == "client" else "received"
            what = f"{verb} stratum {msg.method} on port {event.conn.rport}"
            evidence = {"method": msg.method, "role": msg.role, "excerpt": payload.excerpt(msg)}
            if msg.agent:
                evidence["agent"] = msg.agent
            yield self.finding(STRATUM, what, event, evidence)
        sni = payload.tls_sni(event.data)
        resolver = self.ctx.intel.doh_domain(sni) if sni else None
        if resolver and not self.browser(event):
            what = f"DNS-over-HTTPS to {sni} ({resolver}) from a non-browser"
            yield self.finding(DOH, what, event, {"sni": sni})

    def browser(self, event: FlowPayload) -> bool:
        proc, intel = event.proc, self.ctx.intel
        return proc is not None and (intel.is_browser(proc.name) or intel.is_browser(proc.exe))

    def finding(
        self,
        rule: tuple[str, Category, Severity],
        what: str,
        ev: FlowPayload,
        evidence: dict[str, object],
    ) -> Finding:
        proc, conn = ev.proc, ev.conn
        who = f"{proc.name} (pid {proc.pid})" if proc else "unknown process"
        return Finding(
            rule=rule[0],
            category=rule[1],
            severity=rule[2],
            summary=f"{who}: {what}",
            detector=self.name,
            process=proc,
            connection=conn,
            evidence={**evidence, "raddr": conn.raddr, "rport": conn.rport, "proto": conn.proto},
        )
