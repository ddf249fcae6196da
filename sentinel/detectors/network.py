"""Network rules on new sockets: pool ports with corroboration, names the process used."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.core.events import Event, NetConn
from sentinel.core.model import Category, Finding, Proc, Severity
from sentinel.detectors import Detector, register
from sentinel.rules import cmdline

UNCONNECTED = frozenset({"", "0.0.0.0", "::", "*"})
STRONG_MINER_RULES = frozenset(
    {
        "miner.cmdline.stratum_url",
        "miner.cmdline.miner_flag",
        "miner.cmdline.algo",
        "miner.cmdline.pool_login",
        "miner.cmdline.pool_domain",
        "wallet.cmdline",
    }
)


@register
class NetworkDetector(Detector):
    """Judges each outbound connection by its port, its owner and the names the owner used."""

    name = "network"
    events = (NetConn,)

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, NetConn):
            return
        conn = event.conn
        if event.state.upper() == "LISTEN" or conn.raddr in UNCONNECTED or conn.rport <= 0:
            return
        proc = event.proc
        text = " ".join(proc.cmdline) if proc else ""
        yield from self.pool(event, proc, text, cmdline.stratum_urls(text))
        used = {h for h, _ in cmdline.hostnames(text)}
        yield from self.named_services(event, used, {conn.domain.lower()} if conn.domain else set())

    def pool(
        self, ev: NetConn, proc: Proc | None, text: str, urls: list[tuple[str, int | None]]
    ) -> Iterable[Finding]:
        conn, intel = ev.conn, self.ctx.intel
        url_ports = {port for _, port in urls if port}
        if conn.rport in url_ports:
            yield self.finding(
                "network.stratum_connection",
                Category.NETWORK,
                Severity.HIGH,
                f"connection to port {conn.rport} named in its own stratum URL",
                ev,
                {"urls": [u for u, _ in urls]},
            )
            return
        if conn.rport not in intel.pool_ports or conn.rport in intel.dev_ports:
            return
        severity, why = self.corroboration(proc, text)
        summary = f"connection to mining-pool port {conn.rport}"
        if why:
            summary += f" ({', '.join(why)})"
        yield self.finding(
            "network.pool_port", Category.NETWORK, severity, summary, ev, {"corroboration": why}
        )

    def corroboration(self, proc: Proc | None, text: str) -> tuple[Severity, list[str]]:
        """How much the owner of a pool-port connection looks like a miner, and why."""
        if proc is None:
            return Severity.LOW, []
        intel = self.ctx.intel
        why = sorted({h.rule for h in cmdline.all_hits(text, intel)} & STRONG_MINER_RULES)
        miner = cmdline.miner_name(proc, intel)
        if miner:
            why.insert(0, f"miner name {miner[1]}")
        if why:
            return Severity.HIGH, why
        where = cmdline.exec_location(proc)
        if where:
            return Severity.MEDIUM, [f"executable in {where[0]}"]
        script_dir = cmdline.in_temp_dir(cmdline.script_path(proc))
        if script_dir:
            return Severity.MEDIUM, [f"script in {script_dir}"]
        return Severity.LOW, []

    def named_services(self, ev: NetConn, used: set[str], seen: set[str]) -> Iterable[Finding]:
        """Tunnel and dynamic-DNS names used in the command line or seen on the socket.

        Pool domains count only on the socket: the process rules report them in command lines.
        """
        intel = self.ctx.intel
        checks = (
            (
                intel.tunnel_domain,
                used | seen,
                "tunnel.service_domain",
                Category.TUNNEL,
                Severity.HIGH,
            ),
            (intel.dyndns_domain, used | seen, "network.dyndns", Category.NETWORK, Severity.MEDIUM),
            (intel.pool_domain, seen, "network.pool_domain", Category.NETWORK, Severity.HIGH),
        )
        for match, names, rule, category, severity in checks:
            named = sorted({(h, s) for h in names if (s := match(h))})
            if named:
                host, suffix = named[0]
                yield self.finding(
                    rule,
                    category,
                    severity,
                    f"connected while using {host} ({suffix})",
                    ev,
                    {"names": [h for h, _ in named]},
                )

    def finding(
        self,
        rule: str,
        category: Category,
        severity: Severity,
        what: str,
        ev: NetConn,
        evidence: dict[str, object],
    ) -> Finding:
        conn, proc = ev.conn, ev.proc
        who = f"{proc.name} (pid {proc.pid})" if proc else "unknown process"
        return Finding(
            rule=rule,
            category=category,
            severity=severity,
            summary=f"{who}: {what}",
            detector=self.name,
            process=proc,
            connection=conn,
            evidence={**evidence, "raddr": conn.raddr, "rport": conn.rport, "proto": conn.proto},
        )
