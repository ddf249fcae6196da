"""Traffic fields: what the first bytes of a flow say (stratum, TLS SNI, HTTP Host)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentinel.core.events import FlowPayload
from sentinel.core.model import Connection
from sentinel.rules import payload
from sentinel.rules.cmdline import base
from sentinel.rules.fields.process import sample_proc
from sentinel.rules.kinds import extractor, fact_group, sample_builder

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Subject

KIND = "traffic"

extractor(KIND, "rport")(lambda s: s.obj.conn.rport)
extractor(KIND, "raddr")(lambda s: s.obj.conn.raddr)
extractor(KIND, "role")(lambda s: s.obj.role)
extractor(KIND, "tls.sni")(lambda s: payload.tls_sni(s.obj.data) or "")
extractor(KIND, "http.host")(lambda s: payload.http_host(s.obj.data) or "")


@extractor(KIND, "owner.names")
def _owner_names(s: Subject) -> list[str]:
    """The local process's comm and executable basename, lower-cased."""
    proc = s.obj.proc
    if proc is None:
        return []
    return sorted({n for n in (proc.name.lower(), base(proc.exe)) if n})


@fact_group(KIND, "stratum", ("method", "role", "agent", "excerpt", "verb"))
def _stratum(s: Subject) -> dict[str, Any] | None:
    """A stratum JSON-RPC message at the start of the payload (either direction)."""
    msg = payload.stratum(s.obj.data)
    if msg is None:
        return None
    return {
        "method": msg.method,
        "role": msg.role,
        "agent": msg.agent,
        "excerpt": payload.excerpt(msg),
        "verb": "sent" if msg.role == "client" else "received",
    }


SAMPLE_KEYS = {
    "payload",
    "payload_hex",
    "rport",
    "raddr",
    "role",
    "argv",
    "exe",
    "name",
    "no_owner",
}


@sample_builder(KIND, SAMPLE_KEYS)
def _sample(sample: dict[str, Any]) -> FlowPayload:
    conn = Connection(
        laddr="198.51.100.2",
        raddr=str(sample.get("raddr", "198.51.100.1")),
        rport=int(sample.get("rport", 443)),
        proto="tcp",
    )
    owner = None if sample.get("no_owner") else sample_proc(sample)
    if "payload_hex" in sample:
        data = bytes.fromhex(str(sample["payload_hex"]))
    else:
        data = str(sample.get("payload", "")).encode()
    return FlowPayload(1000.0, conn, owner, str(sample.get("role", "client")), data)
