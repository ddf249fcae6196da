"""Network fields: socket facts, and what the owner's command line says about the socket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentinel.core.events import NetConn
from sentinel.core.model import Connection
from sentinel.rules import cmdline
from sentinel.rules.fields import text
from sentinel.rules.fields.process import sample_proc
from sentinel.rules.kinds import extractor, sample_builder

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Subject

KIND = "network"
UNCONNECTED = frozenset({"", "0.0.0.0", "::", "*"})
EVIDENCE_TAG = "miner-evidence"  # text rules that make a pool-port connection a miner's

extractor(KIND, "raddr")(lambda s: s.obj.conn.raddr)
extractor(KIND, "rport")(lambda s: s.obj.conn.rport)
extractor(KIND, "proto")(lambda s: s.obj.conn.proto)
extractor(KIND, "state")(lambda s: s.obj.state.upper())
extractor(KIND, "domain")(lambda s: (s.obj.conn.domain or "").lower())
extractor(KIND, "owner")(lambda s: s.obj.proc.name if s.obj.proc else "")
extractor(KIND, "owner.cmdline")(lambda s: " ".join(s.obj.proc.cmdline) if s.obj.proc else "")


@extractor(KIND, "outbound")
def _outbound(s: Subject) -> bool:
    """A connected socket with a far end (not a listener, not unconnected)."""
    c = s.obj.conn
    return s.get("state") != "LISTEN" and c.raddr not in UNCONNECTED and c.rport > 0


@extractor(KIND, "owner.stratum_urls")
def _urls(s: Subject) -> list[tuple[str, int | None]]:
    return cmdline.stratum_urls(s.get("owner.cmdline"))


extractor(KIND, "owner.urls")(lambda s: [u for u, _ in s.get("owner.stratum_urls")])


@extractor(KIND, "port_in_url")
def _port_in_url(s: Subject) -> bool:
    """The socket's port is the one named in a stratum URL of its own command line."""
    return s.obj.conn.rport in {p for _, p in s.get("owner.stratum_urls") if p}


@extractor(KIND, "names_used")
def _names_used(s: Subject) -> list[str]:
    """Host names in the owner's command line and the name seen on the socket, sorted."""
    used = {h for h, _ in cmdline.hostnames(s.get("owner.cmdline"))}
    return sorted(used | set(s.get("names_seen")))


@extractor(KIND, "names_seen")
def _names_seen(s: Subject) -> list[str]:
    """The socket's name and the CNAME targets DNS gave from it to the address."""
    return [n.lower() for n in (s.obj.conn.domain, *s.obj.conn.aliases) if n]


@extractor(KIND, "corroboration")
def _corroboration(s: Subject) -> tuple[str, list[str]]:
    """How much the owner looks like a miner ('high' | 'medium' | 'low'), and why."""
    proc = s.obj.proc
    if proc is None:
        return "low", []
    found = text.matches(s.catalogue, s.get("owner.cmdline"))
    why = sorted({m.rule.id for m in found if EVIDENCE_TAG in m.rule.tags})
    owner = s.catalogue.subject("process", proc)
    miner = owner.get("miner_name.name")
    if miner:
        why.insert(0, f"miner name {miner}")
    if why:
        return "high", why
    where = cmdline.exec_location(proc)
    if where:
        return "medium", [f"executable in {where[0]}"]
    script_dir = cmdline.in_temp_dir(cmdline.script_path(proc))
    if script_dir:
        return "medium", [f"script in {script_dir}"]
    return "low", []


extractor(KIND, "corroboration.level")(lambda s: s.get("corroboration")[0])
extractor(KIND, "corroboration.why")(lambda s: s.get("corroboration")[1])


@extractor(KIND, "corroboration.note")
def _note(s: Subject) -> str:
    why = s.get("corroboration.why")
    return f" ({', '.join(why)})" if why else ""


SAMPLE_KEYS = {"raddr", "rport", "proto", "state", "domain", "argv", "exe", "name", "no_owner"}


@sample_builder(KIND, SAMPLE_KEYS)
def _sample(sample: dict[str, Any]) -> NetConn:
    conn = Connection(
        laddr="10.0.0.2",
        raddr=str(sample.get("raddr", "198.51.100.7")),
        rport=int(sample.get("rport", 443)),
        proto=str(sample.get("proto", "tcp")),
        domain=sample.get("domain"),
    )
    owner = None if sample.get("no_owner") else sample_proc(sample)
    return NetConn(1000.0, conn, owner, str(sample.get("state", "ESTABLISHED")))
