"""Network: outbound sockets not seen before, with their owner, from /proc/net tables.

Every `agent.interval` the tcp, tcp6, udp and udp6 tables of each network namespace are
read (cheap); only a socket inode not seen before has its owner looked for in /proc/*/fd.
Listening sockets and connections accepted by a local listener are not reported. Names are
never resolved: Connection.domain stays None here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass

from sentinel import proctable
from sentinel.collectors import Collector, Emit, register
from sentinel.context import Context
from sentinel.events import NetConn
from sentinel.model import Connection

log = logging.getLogger(__name__)

TABLES = (
    ("tcp", "tcp", socket.AF_INET),
    ("tcp6", "tcp", socket.AF_INET6),
    ("udp", "udp", socket.AF_INET),
    ("udp6", "udp", socket.AF_INET6),
)
ESTABLISHED, SYN_SENT, LISTEN, CLOSE = "01", "02", "0A", "07"
STATES = {ESTABLISHED: "ESTABLISHED", SYN_SENT: "SYN_SENT"}
MAPPED = "::ffff:"


@dataclass(frozen=True, slots=True)
class Row:
    """One socket of a /proc/net table that may be reported."""

    inode: int
    proto: str
    family: int
    local: str  # hex address:port as the kernel prints it
    remote: str
    state: str


def decode(hexaddr: str, family: int) -> tuple[str, int]:
    """'0100007F:0CEA' -> ('127.0.0.1', 3306): words are printed in host byte order."""
    addr, port = hexaddr.split(":")
    raw = bytes.fromhex(addr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = socket.inet_ntop(family, raw)
    if family == socket.AF_INET6 and ip.startswith(MAPPED) and "." in ip:
        ip = ip[len(MAPPED) :]
    return ip, int(port, 16)


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def read_table(path: str, proto: str, family: int) -> list[Row]:
    """Connected sockets of one table, accepted ones (local port of a listener) left out."""
    with open(path, "rb") as f:
        lines = f.read().decode("ascii", "replace").splitlines()[1:]
    listeners: set[tuple[str, str]] = set()
    rows = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if proto == "tcp" and state == LISTEN:
            addr, port = local.split(":")
            listeners.add((addr, port))
        elif inode and state in STATES and (proto == "tcp" or state == ESTABLISHED):
            rows.append(Row(inode, proto, family, local, remote, state))
        elif proto == "udp" and state == CLOSE:
            addr, port = local.split(":")
            listeners.add((addr, port))
    wild = "0" * (8 if family == socket.AF_INET else 32)
    out = []
    for row in rows:
        addr, port = row.local.split(":")
        if (addr, port) in listeners or (wild, port) in listeners:
            continue  # accepted from a local listener (or sharing its port): inbound
        out.append(row)
    return out


@register
class NetCollector(Collector):
    """Emits NetConn once per new outbound TCP or connected UDP socket."""

    name = "net"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.procfs = ctx.procfs
        self.seen: set[int] = set()
        self.ns_of: dict[int, str] = {}  # pid -> network namespace

    async def run(self) -> None:
        first = True
        while True:
            with self.measure("sweep"):
                self.sweep()
                if first:
                    first = False
                    if os.geteuid() != 0:
                        self.report(
                            False,
                            "not root: owners of other users' sockets and other network "
                            "namespaces cannot be read",
                        )
                    else:
                        self.report(True)
            await asyncio.sleep(self.ctx.config.agent.interval)

    def table_dirs(self) -> list[str]:
        """The agent's own /proc/net, and one /proc/PID/net per other network namespace."""
        pids = set(proctable.list_pids(self.procfs))
        for pid in self.ns_of.keys() - pids:
            del self.ns_of[pid]
        for pid in pids - self.ns_of.keys():
            try:
                self.ns_of[pid] = os.readlink(f"{self.procfs}/{pid}/ns/net")
            except OSError:
                self.ns_of[pid] = ""
        try:
            own = os.readlink(f"{self.procfs}/self/ns/net")
        except OSError:
            own = ""
        others: dict[str, int] = {}
        for pid, ns in self.ns_of.items():
            if ns and ns != own:
                others.setdefault(ns, pid)
        return [f"{self.procfs}/net", *(f"{self.procfs}/{pid}/net" for pid in others.values())]

    def sweep(self) -> None:
        live: set[int] = set()
        fresh: list[Row] = []
        for table_dir in self.table_dirs():
            for name, proto, family in TABLES:
                try:
                    rows = read_table(f"{table_dir}/{name}", proto, family)
                except OSError:
                    continue  # no IPv6, or the namespace's last process just left
                for row in rows:
                    if row.inode not in live:
                        live.add(row.inode)
                        if row.inode not in self.seen:
                            fresh.append(row)
        self.seen = live  # closed sockets are forgotten
        if not fresh:
            return
        owners = self.owners({row.inode for row in fresh})
        for row in fresh:
            lip, lport = decode(row.local, row.family)
            rip, rport = decode(row.remote, row.family)
            pid = owners.get(row.inode)
            proc = self.ctx.procs.get(pid) if pid else None
            conn = Connection(laddr=endpoint(lip, lport), raddr=rip, rport=rport, proto=row.proto)
            state = STATES[row.state] if row.proto == "tcp" else "CONNECTED"
            self.emit(NetConn(time=time.time(), conn=conn, proc=proc, state=state))

    def owners(self, inodes: set[int]) -> dict[int, int]:
        """inode -> pid for these sockets, from /proc/*/fd; newest processes are read first."""
        found: dict[int, int] = {}
        want = set(inodes)
        for pid in sorted(proctable.list_pids(self.procfs), reverse=True):
            fd_dir = f"{self.procfs}/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    if inode in want:
                        found[inode] = pid
                        want.discard(inode)
            if not want:
                break
        return found
