"""Network: outbound sockets not seen before, with their owner, in every network namespace.

Every `agent.interval`, on a worker thread (a thousand namespaces or a hundred thousand
fds must not hold the event loop), the TCP and UDP sockets (v4 and v6) of each network namespace are
listed with sock_diag (netlink; one dump walks only the sockets in the asked states) or,
where that is not available, read from the /proc/net tables, whose generation walks the
whole connection hash on every read. Only a socket inode not seen before has its owner
looked for in /proc/*/fd. Listening sockets and connections accepted by a local listener
are not reported: a connected socket on a listener's port is accepted only when its owner
(or the owner's parent, for a server that forks per connection) holds that listener's
socket, so one that bound the port with SO_REUSEPORT and connected out is still outbound.
A process that moves into another network namespace (unshare, setns) is followed there:
/proc/PID/ns/net is read again at the next pass for a process seen running (CPU, a fork,
a thread) and within FOLLOW_ROTATE passes for any other. Names are never resolved:
Connection.domain is the name a DNS answer seen by the traffic collector gave for the
remote address in that namespace, if any.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from sentinel.collectors import Collector, Emit, register
from sentinel.core import fdowners, proctable
from sentinel.core.context import Context
from sentinel.core.events import NetConn
from sentinel.core.model import Connection
from sentinel.core.ownerfacts import OwnerReader
from sentinel.ops import metrics

log = logging.getLogger(__name__)

# kernel TCP states (UDP reuses ESTABLISHED for connected and CLOSE for unconnected)
ESTABLISHED, SYN_SENT, CLOSE, LISTEN = 1, 2, 7, 10
RECONCILE = 6  # namespace lookups between two listings of procfs (see Namespaces)
LISTING_EVERY = 60  # with a complete process table, calls between listings of procfs
FOLLOW_ROTATE = 60  # calls within which every known pid's namespace is read again (5 min)
SERVERS_KEPT = 4096  # listener inode -> accepting pid entries, forgotten all at once beyond
STATE_NAMES = {ESTABLISHED: "ESTABLISHED", SYN_SENT: "SYN_SENT"}
WILDCARD = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
MAPPED = "::ffff:"
PROTOS = (("tcp", socket.IPPROTO_TCP), ("udp", socket.IPPROTO_UDP))
FAMILIES = ((socket.AF_INET, ""), (socket.AF_INET6, "6"))
WANTED = {
    "tcp": (1 << ESTABLISHED) | (1 << SYN_SENT) | (1 << LISTEN),
    "udp": (1 << ESTABLISHED) | (1 << CLOSE),
}

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CLONE_NEWNET = 0x40000000
NLMSGHDR = struct.Struct("=IHHII")
DIAG_REQ = struct.Struct("=BBBBI48s")  # family, protocol, ext, pad, states, sockid
DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # ..., sport, dport, src, dst, ..., inode
DIAG_TIMEOUT = 2.0

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sock:
    inode: int
    proto: str
    family: int
    lip: str
    lport: int
    rip: str
    rport: int
    state: int


def normal(ip: str) -> str:
    """An IPv4-mapped IPv6 address as the IPv4 address it is."""
    return ip[len(MAPPED) :] if ip.startswith(MAPPED) and "." in ip else ip


def decode(hexaddr: str, family: int) -> tuple[str, int]:
    """'0100007F:0D05' -> ('127.0.0.1', 3333): /proc/net words are in host byte order."""
    addr, port = hexaddr.split(":")
    raw = bytes.fromhex(addr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return normal(socket.inet_ntop(family, raw)), int(port, 16)


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def connected(socks: Iterable[Sock]) -> list[tuple[Sock, frozenset[int]]]:
    """Connected TCP (established, connecting) and connected UDP sockets, each with the
    inodes of the local listeners on its port (its address or the wildcard): an accepted
    connection has some, and so has an outbound one that bound a listener's port
    (SO_REUSEPORT); who holds the listener tells them apart (see `holds`)."""
    socks = list(socks)
    listeners: dict[tuple[str, str, int], set[int]] = {}
    for s in socks:
        if s.state == LISTEN or (s.proto == "udp" and s.state == CLOSE):
            listeners.setdefault((s.proto, s.lip, s.lport), set()).add(s.inode)
    out = []
    none: set[int] = set()
    for s in socks:
        live = s.state == ESTABLISHED or (s.proto == "tcp" and s.state == SYN_SENT)
        if not s.inode or not live:
            continue
        shared = listeners.get((s.proto, s.lip, s.lport), none) | listeners.get(
            (s.proto, WILDCARD[s.family], s.lport), none
        )
        out.append((s, frozenset(shared)))
    return out


def sockets_of(procfs: str, pid: int) -> set[int]:
    """The socket inodes `pid` has open (one readlink per fd it holds)."""
    fd_dir = f"{procfs}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    found = set()
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def holds(procfs: str, pid: int, inodes: frozenset[int]) -> bool:
    """Whether `pid` has one of these sockets open."""
    return not inodes.isdisjoint(sockets_of(procfs, pid))


def read_tables(net_dir: str) -> list[Sock]:
    """All sockets of the tcp, tcp6, udp and udp6 tables in a /proc/.../net directory."""
    socks = []
    for proto, _ in PROTOS:
        for family, suffix in FAMILIES:
            try:
                with open(f"{net_dir}/{proto}{suffix}", "rb") as f:
                    lines = f.read().decode("ascii", "replace").splitlines()[1:]
            except OSError:
                continue  # no IPv6, or the namespace's last process just left
            for line in lines:
                fields = line.split()
                if len(fields) < 10 or not WANTED[proto] & (1 << int(fields[3], 16)):
                    continue
                lip, lport = decode(fields[1], family)
                rip, rport = decode(fields[2], family)
                state = int(fields[3], 16)
                socks.append(Sock(int(fields[9]), proto, family, lip, lport, rip, rport, state))
    return socks


def in_netns(ns_file: str, make: Callable[[], T]) -> T:
    """`make()` called inside the network namespace of `ns_file` (this thread only; a
    socket it opens stays in that namespace), then back to the thread's own."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(ns_file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}", ns_file)
            try:
                return make()
            finally:
                if _libc.setns(own, CLONE_NEWNET) != 0:
                    raise SystemExit("sentinel: cannot return to its own network namespace")
        finally:
            os.close(target)
    finally:
        os.close(own)


def diag_socket(ns_file: str | None = None) -> socket.socket:
    """A sock_diag socket in the agent's network namespace or in the one of `ns_file`."""
    if ns_file is not None:
        return in_netns(ns_file, diag_socket)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    sock.settimeout(DIAG_TIMEOUT)
    return sock


def diag_dump(sock: socket.socket) -> list[Sock]:
    """The wanted sockets of one namespace: four dumps (TCP, UDP; v4, v6)."""
    socks = []
    for proto, number in PROTOS:
        for family, _ in FAMILIES:
            req = DIAG_REQ.pack(family, number, 0, 0, WANTED[proto], bytes(48))
            head = NLMSGHDR.pack(
                NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 0, 0
            )
            sock.send(head + req)
            socks.extend(diag_replies(sock, proto))
    return socks


def diag_replies(sock: socket.socket, proto: str) -> list[Sock]:
    """Read one dump's answer up to NLMSG_DONE."""
    out = []
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + NLMSGHDR.size <= len(data):
            length, kind = NLMSGHDR.unpack_from(data, off)[:2]
            if length < NLMSGHDR.size:
                raise OSError(errno.EIO, "sock_diag: malformed answer")
            if kind == NLMSG_DONE:
                return out
            if kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", data, off + NLMSGHDR.size)[0]
                raise OSError(err, f"sock_diag: {os.strerror(err)}")
            if length >= NLMSGHDR.size + DIAG_MSG.size:
                fam, state, _, _, sport, dport, src, dst, *_, inode = DIAG_MSG.unpack_from(
                    data, off + NLMSGHDR.size
                )
                n = 4 if fam == socket.AF_INET else 16
                lip = normal(socket.inet_ntop(fam, src[:n]))
                rip = normal(socket.inet_ntop(fam, dst[:n]))
                lport, rport = int.from_bytes(sport, "big"), int.from_bytes(dport, "big")
                out.append(Sock(inode, proto, fam, lip, lport, rip, rport, state))
            off += (length + 3) & ~3


def diag_find(sock: socket.socket, family: int, lip: str, lport: int, rip: str, rport: int) -> int:
    """The inode of the TCP socket with this local and remote end (0: none), by one exact
    sock_diag lookup instead of a dump."""
    sockid = struct.pack(
        "!HH16s16s",
        lport,
        rport,
        socket.inet_pton(family, lip).ljust(16, b"\0"),
        socket.inet_pton(family, rip).ljust(16, b"\0"),
    ) + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    req = DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF, sockid)
    sock.send(
        NLMSGHDR.pack(NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 0, 0) + req
    )
    data = sock.recv(1 << 12)
    if len(data) < NLMSGHDR.size + DIAG_MSG.size:
        return 0  # NLMSG_ERROR: ENOENT when no such socket
    if NLMSGHDR.unpack_from(data)[1] != SOCK_DIAG_BY_FAMILY:
        return 0
    return DIAG_MSG.unpack_from(data, NLMSGHDR.size)[-1]


class Namespaces:
    """The network namespaces with a process in them, and a pid inside each, kept up to
    date at a cost that follows what changed: each call reads the namespace of the pids
    whose process table entry changed since the last (the procs collector keeps the table
    from exec and exit events; an exec, as after a setns, counts), and every RECONCILE
    calls (every call when no procs collector keeps the table) procfs is listed to catch
    the pids the table does not hold. Each call also re-reads the namespace of the known
    pids seen running and of a share of the others (`follow`), so one that unshares or
    calls setns without an exec is followed into its new namespace."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ns_of: dict[int, str] = {}  # pid -> network namespace ('' when unreadable)
        self.members: dict[str, set[int]] = {}  # namespace but the agent's -> its pids
        self.changes = ctx.procs.changes()
        self.active = ctx.procs.activity()
        self.buckets: list[set[int]] = [set() for _ in range(FOLLOW_ROTATE)]  # by pid % R
        self.calls = 0

    def find(self) -> dict[str, int]:
        """Each network namespace seen ('' for the agent's own) and a pid inside it."""
        procfs = self.ctx.procfs
        try:
            own = os.readlink(f"{procfs}/self/ns/net")
        except OSError:
            own = ""
        self.follow(own)
        changed = self.changes.take()
        complete = self.ctx.procs.complete  # the table holds every process: a safety net
        listing = self.calls % (LISTING_EVERY if complete else RECONCILE) == 0 or not complete
        self.calls += 1
        if listing:
            pids = set(proctable.list_pids(procfs))
            for pid in (self.ns_of.keys() - pids) | (changed & self.ns_of.keys()):
                self._drop(pid)
            fresh: Iterable[int] = pids - self.ns_of.keys()
        else:
            for pid in changed:
                self._drop(pid)
            table = self.ctx.procs.procs
            fresh = [pid for pid in changed if pid in table]
        for pid in fresh:
            try:
                ns = os.readlink(f"{procfs}/{pid}/ns/net")
            except OSError:
                ns = ""
            self._set(pid, ns, own)
        found = {"": 0}
        for ns, members in self.members.items():
            if ns != own:
                found[ns] = min(members)
        return found

    def follow(self, own: str) -> None:
        """Move each known pid whose namespace changed since it was read (it unshared or
        called setns without an exec): one readlink for each pid seen running since the
        last call (it used CPU, forked or started a thread) and for a FOLLOW_ROTATE-th
        share of the others, so the cost does not grow with sleeping processes and any
        move is seen within FOLLOW_ROTATE calls."""
        procfs = self.ctx.procfs
        due = self.buckets[self.calls % FOLLOW_ROTATE]
        for pid in due | (self.active.take() & self.ns_of.keys()):
            ns = self.ns_of[pid]
            try:
                now = os.readlink(f"{procfs}/{pid}/ns/net")
            except OSError:
                now = ""
            if now == ns:
                continue
            self._drop(pid)
            if now:  # else gone: forgotten until the table or a listing names it again
                self._set(pid, now, own)

    def _set(self, pid: int, ns: str, own: str) -> None:
        self.ns_of[pid] = ns = sys.intern(ns)  # one copy per namespace
        self.buckets[pid % FOLLOW_ROTATE].add(pid)
        if ns and ns != own:
            self.members.setdefault(ns, set()).add(pid)

    def _drop(self, pid: int) -> None:
        self.buckets[pid % FOLLOW_ROTATE].discard(pid)
        ns = self.ns_of.pop(pid, None)
        members = self.members.get(ns) if ns else None
        if members is not None:
            members.discard(pid)
            if not members:
                del self.members[ns]


@register
class NetCollector(Collector):
    """Emits NetConn once per new outbound TCP or connected UDP socket."""

    name = "net"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.procfs = ctx.procfs
        self.live = os.path.realpath(self.procfs) == "/proc"
        self.seen: set[int] = set()  # sockets judged: outbound (reported) and accepted
        self.servers: dict[int, int] = {}  # listener inode -> the pid that accepted on it
        self.netns = Namespaces(ctx)
        self.facts = OwnerReader(self.procfs, ctx.config.watch.paths)
        self.diags: dict[str, socket.socket | None] = {}  # namespace -> sock_diag socket

    async def run(self) -> None:
        first = True
        try:
            while True:
                with self.measure("sweep"):
                    await asyncio.to_thread(self.sweep)
                    if first:
                        first = False
                        self.report_state()
                await asyncio.sleep(self.ctx.config.agent.interval)
        finally:
            for sock in self.diags.values():
                if sock is not None:
                    sock.close()
            self.diags.clear()

    def report_state(self) -> None:
        problems = []
        if os.geteuid() != 0:
            problems.append("not root: owners of other users' sockets cannot be read")
        if self.live and self.diags.get("") is None:
            problems.append("sock_diag unavailable: reading the slower /proc/net tables")
        if problems:
            self.report(False, "; ".join(problems))
        else:
            self.report(True)

    def namespaces(self) -> dict[str, int]:
        """Each network namespace seen ('' for the agent's own) and a pid inside it."""
        return self.netns.find()

    def sockets(self, ns: str, pid: int) -> list[Sock]:
        """The sockets of one namespace, by sock_diag when it can be had, else the tables.

        Only the agent's own namespace keeps its sock_diag socket; one for another
        namespace is opened for the dump and closed after it, so a user who makes a
        thousand namespaces cannot make the agent hold a thousand fds.
        """
        if self.live and ns not in self.diags:
            try:
                sock = diag_socket(f"{self.procfs}/{pid}/ns/net" if ns else None)
            except OSError as exc:
                log.info("sock_diag for %s unavailable (%s): reading tables", ns or "own", exc)
                sock = None
                self.diags[ns] = None
            if sock is not None and not ns:
                self.diags[ns] = sock
        else:
            sock = self.diags.get(ns)
        if sock is not None:
            try:
                return diag_dump(sock)
            except OSError as exc:
                log.warning("sock_diag dump failed (%s): reading tables from now on", exc)
                metrics.errors.labels("collector.net").inc()
                self.diags[ns] = None
                self.report_state()
            finally:
                if ns or self.diags.get(ns) is None:
                    sock.close()
        return read_tables(f"{self.procfs}/{pid}/net" if ns else f"{self.procfs}/net")

    def sweep(self) -> None:
        namespaces = self.namespaces()
        for ns in self.diags.keys() - namespaces.keys():  # its last process left
            sock = self.diags.pop(ns)
            if sock is not None:
                sock.close()
        live: set[int] = set()
        fresh: list[tuple[str, Sock, frozenset[int]]] = []
        for ns, pid in namespaces.items():
            for s, listeners in connected(self.sockets(ns, pid)):
                if s.inode not in live:
                    live.add(s.inode)
                    if s.inode not in self.seen:
                        fresh.append((ns, s, listeners))
        self.seen = live  # closed sockets are forgotten
        if not fresh:
            return
        served = self.served(fresh)
        owners = self.owners({s.inode for _, s, _ in fresh if s.inode not in served})
        for ns, s, listeners in fresh:
            if s.inode in served:
                continue
            pid = owners.get(s.inode)
            if listeners and self.accepted(pid, listeners):
                continue
            proc = self.ctx.procs.get(pid) if pid else None
            laddr = endpoint(s.lip, s.lport)
            names = self.ctx.names.names(ns, s.rip)  # from a DNS answer the namespace got
            domain, aliases = (names[0], names[1:]) if names else (None, ())
            conn = Connection(laddr, s.rip, s.rport, s.proto, domain, aliases)
            state = STATE_NAMES[s.state] if s.proto == "tcp" else "CONNECTED"
            facts = self.facts.facts(proc.pid, proc.start_time, s.inode) if proc else None
            self.emit(NetConn(time.time(), conn, proc, state, facts))

    def served(self, fresh: list[tuple[str, Sock, frozenset[int]]]) -> set[int]:
        """The new sockets on a listener's port that a process known to have accepted on
        that listener holds, with the listener still: accepted, found without a walk of
        every process's fds (one pass over each such server's own)."""
        wanted: dict[int, list[tuple[int, frozenset[int]]]] = {}  # server pid -> candidates
        for _, s, listeners in fresh:
            for pid in {self.servers[i] for i in listeners if i in self.servers}:
                wanted.setdefault(pid, []).append((s.inode, listeners))
        found: set[int] = set()
        for pid, candidates in wanted.items():
            held = sockets_of(self.procfs, pid)
            found.update(i for i, listeners in candidates if i in held and listeners & held)
        return found

    def accepted(self, pid: int | None, listeners: frozenset[int]) -> bool:
        """A connection on a listener's port was accepted by it: its owner or the owner's
        parent holds the listener (an owner not found: taken as accepted, as by port)."""
        if pid is None:
            return True
        server: int | None = pid
        if not holds(self.procfs, pid, listeners):
            proc = self.ctx.procs.get(pid)
            server = proc.ppid if proc is not None and proc.ppid > 0 else None
            if server is None or not holds(self.procfs, server, listeners):
                return False
        if len(self.servers) >= SERVERS_KEPT:
            self.servers.clear()
        self.servers.update(dict.fromkeys(listeners, pid))
        return True

    def owners(self, inodes: set[int]) -> dict[int, int]:
        """inode -> pid for these sockets, from /proc/*/fd within a time budget."""
        return fdowners.socket_owners(inodes, self.procfs, first=self.ctx.procs.recent())
