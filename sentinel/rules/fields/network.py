"""Network fields: socket facts, and what the owner's command line, environment, stdin and
standard streams say about the socket; the egress allow-list's verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sentinel.core.events import Indicators, NetConn, OwnerFacts
from sentinel.core.model import Connection
from sentinel.rules import cmdline, egress
from sentinel.rules.fields import text
from sentinel.rules.fields.process import sample_proc
from sentinel.rules.indicators import as_evidence, indicators
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
    """Stratum URLs of the owner's command line, then of its environment and stdin file."""
    urls = cmdline.stratum_urls(s.get("owner.cmdline"))
    for found in s.get("owner.hidden"):
        for url in found.urls:
            urls.extend(cmdline.stratum_urls(url))
    return urls


extractor(KIND, "owner.urls")(lambda s: [u for u, _ in s.get("owner.stratum_urls")])


@extractor(KIND, "port_in_url")
def _port_in_url(s: Subject) -> bool:
    """The socket's port is the one named in a stratum URL of its own command line or
    environment, or in a pool `host:port` of its environment or stdin file."""
    ports = {p for _, p in s.get("owner.stratum_urls") if p}
    ports.update(int(hp.rpartition(":")[2]) for f in s.get("owner.hidden") for hp in f.pools)
    return s.obj.conn.rport in ports


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _facts(s: Subject) -> OwnerFacts:
    return s.obj.owner or OwnerFacts()


extractor(KIND, "destination")(lambda s: _endpoint(s.obj.conn.raddr, s.obj.conn.rport))
extractor(KIND, "raddr_local")(lambda s: egress.is_local(s.obj.conn.raddr))
extractor(KIND, "owner.stdio_socket")(lambda s: list(_facts(s).stdio))
extractor(KIND, "owner.stdin")(lambda s: _facts(s).stdin)
extractor(KIND, "owner.hidden")(lambda s: _facts(s).hidden)


@extractor(KIND, "owner.programs")
def _programs(s: Subject) -> list[str]:
    """The owner's name (comm) and executable basename, lower case."""
    proc = s.obj.proc
    if proc is None:
        return []
    return sorted({n for n in (proc.name.lower(), cmdline.base(proc.exe)) if n})


extractor(KIND, "owner.hidden_indicators")(lambda s: as_evidence(s.get("owner.hidden")))


@extractor(KIND, "egress.allow")
def _egress_allow(s: Subject) -> tuple[egress.Allow, ...] | None:
    """The allow-list in force (the network detector sets it; None: off)."""
    return getattr(s.obj, "egress_allow", None)


extractor(KIND, "egress.checked")(lambda s: s.get("egress.allow") is not None)


@extractor(KIND, "egress.allowed")
def _egress_allowed(s: Subject) -> bool:
    """The destination is on the allow-list (always, when the list is off)."""
    policy = s.get("egress.allow")
    return policy is None or egress.allowed(policy, s.obj.conn.raddr, s.obj.conn.rport)


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
    why.extend(_hidden_why(s.get("owner.hidden")))
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


def _hidden_why(hidden: tuple[Indicators, ...]) -> list[str]:
    """'stratum URL in environ (POOL)' and the like, one per source and sort."""
    why = []
    for f in hidden:
        names = f" ({', '.join(f.names)})" if f.names else ""
        for what, present in (("stratum URL", f.urls), ("pool", f.pools), ("wallet", f.wallets)):
            if present:
                why.append(f"{what} in {f.source}{names}")
    return why


extractor(KIND, "corroboration.level")(lambda s: s.get("corroboration")[0])
extractor(KIND, "corroboration.why")(lambda s: s.get("corroboration")[1])


@extractor(KIND, "corroboration.note")
def _note(s: Subject) -> str:
    why = s.get("corroboration.why")
    return f" ({', '.join(why)})" if why else ""


SAMPLE_KEYS = {
    "raddr",
    "rport",
    "proto",
    "state",
    "domain",
    "argv",
    "exe",
    "name",
    "no_owner",
    "stdio",
    "stdin",
    "env",
    "egress_allow",
}


@dataclass(slots=True)
class SampleConn(NetConn):
    """A test sample's connection, with the allow-list the sample is judged by."""

    egress_allow: tuple[egress.Allow, ...] | None = None


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
    env = sample.get("env", {})
    if not isinstance(env, dict):
        raise TypeError("env is a table of NAME = value")
    found = indicators([(str(k), str(v)) for k, v in env.items()], "environ")
    facts = OwnerFacts(
        tuple(str(x) for x in sample.get("stdio", [])),
        str(sample.get("stdin", "")),
        (found,) if found else (),
    )
    allow = sample.get("egress_allow")
    policy = egress.parse([str(a) for a in allow]) if allow is not None else None
    state = str(sample.get("state", "ESTABLISHED"))
    return SampleConn(1000.0, conn, owner, state, facts, egress_allow=policy)
