"""The traffic collector: one filtered packet socket per watched network namespace.

A capture thread reads the sockets. DNS answers fill the context's name map for the
namespace they arrived in. The first messages of a TCP flow (ClientHello, HTTP request,
stratum JSON-RPC) become FlowPayload events tied to the local process by an exact
sock_diag lookup of the 5-tuple: the sender's socket for a client's message (seen leaving
its namespace), the receiver's for a server's (seen arriving), so a packet that crosses a
veth pair between two watched namespaces is reported once. A name the process sent (TLS
SNI, HTTP Host) also goes out as a NetConn with `domain` set, for the network rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue
import resource
import selectors
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sentinel.collectors import Collector, Emit, register
from sentinel.collectors import net as netcol
from sentinel.collectors.traffic import capture, dns
from sentinel.collectors.traffic.packets import Packet, Reassembly, decode
from sentinel.core import fdowners
from sentinel.core.context import Context
from sentinel.core.events import FlowPayload, NetConn
from sentinel.core.model import Connection
from sentinel.ops import metrics
from sentinel.rules import payload

log = logging.getLogger(__name__)

RCVBUF = 4 << 20
BATCH = 256
POLL = 0.2
GATHER = 0.05  # after a wakeup, let packets gather for this long: fewer, fuller reads
OWNERLESS_WAIT = 0.5  # a copy seen where no socket owns it waits for the owned one
MESSAGES_PER_FLOW = 4
FLOWS_KEPT = 8192
FDS_PER_WATCH = 32  # at most one watch (two sockets) per this many allowed open files


def max_watches() -> int:
    """Namespaces watched at most: a user who makes thousands (`unshare -rn`) must not
    spend the descriptors that process discovery needs."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(2, (soft if soft != resource.RLIM_INFINITY else 1 << 20) // FDS_PER_WATCH)


OWNERS_KEPT = 4096
MISS_AGAIN = 1.0  # seconds before a socket no process held is looked for again
SOL_PACKET, PACKET_STATISTICS = 263, 6
STATS_EVERY = 5.0  # seconds between two reads of the kernel's drop counters
DROP_HOLD = 30.0  # the collector stays degraded this long after the kernel last dropped


@dataclass
class Watch:
    """One network namespace: its packet socket, its sock_diag socket, its follow set."""

    ns: str
    packets: socket.socket
    diag: socket.socket | None
    follow: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    def close(self) -> None:
        self.packets.close()
        if self.diag is not None:
            self.diag.close()


def open_watch(ns: str, ns_file: str | None, snaplen: int) -> Watch:
    """Packet and sock_diag sockets inside the namespace of `ns_file` (None: the agent's)."""

    def make() -> Watch:
        packets = capture.open_socket(snaplen, RCVBUF)
        try:
            diag = netcol.diag_socket()
        except OSError:
            diag = None
        return Watch(ns, packets, diag)

    return make() if ns_file is None else netcol.in_netns(ns_file, make)


def ends(pkt: Packet, who: str) -> tuple[str, int, str, int]:
    """(local address, port, remote address, port) of the socket that owns the message."""
    if who == "client":
        return pkt.src, pkt.sport, pkt.dst, pkt.dport
    return pkt.dst, pkt.dport, pkt.src, pkt.sport


def role(data: bytes) -> str | None:
    """Who sends a flow's first bytes like these: client, server, or None (not ours)."""
    if payload.tls_record_size(data) and data[5:6] == b"\x01":  # a ClientHello
        return "client"
    if payload.http_request(data):
        return "client"
    msg = payload.stratum(data)
    return msg.role if msg else None


class LRU(OrderedDict[object, int]):
    """A counter that forgets its oldest keys beyond `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def bump(self, key: object) -> int:
        value = self.pop(key, 0) + 1
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


@register
class TrafficCollector(Collector):
    """Emits FlowPayload for flow openings and fills the DNS name map, per namespace."""

    name = "traffic"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.cfg = ctx.config.traffic
        self.procfs = ctx.procfs
        self.netns = netcol.Namespaces(ctx)
        self.watched: dict[str, Watch] = {}
        self.failed: set[str] = set()
        self.changes: queue.SimpleQueue[tuple[str, Watch | None]] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.waker: tuple[int, int] | None = None  # a pipe that ends the capture thread's wait
        self.flows = Reassembly(self.cfg.flow_bytes)
        self.budget = LRU(FLOWS_KEPT)
        self.sent = LRU(FLOWS_KEPT)
        self.owners: OrderedDict[int, int] = OrderedDict()
        self.unresolved: list[tuple[int, Watch, Packet, str, bytes]] = []
        self.missed: OrderedDict[int, float] = OrderedDict()  # inode -> no new scan before
        self.ownerless: dict[tuple[object, ...], tuple[float, FlowPayload]] = {}
        self.asked = dns.Asked()
        self.dropped, self.last_drop = 0, float("-inf")  # written by the capture thread
        self.counts: dict[str, int] = dict.fromkeys(
            ("dns", "unasked", "payload", "malformed", "other"), 0
        )

    def enabled(self) -> bool:
        return self.cfg.enabled

    async def run(self) -> None:
        self.waker = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        thread = threading.Thread(target=self.capture, name="sentinel-traffic", daemon=True)
        thread.start()
        try:
            while True:
                with self.measure("namespaces"):
                    await self.refresh()
                await asyncio.sleep(self.ctx.config.agent.interval)
        finally:
            self.stop.set()
            self.wake()
            await asyncio.to_thread(thread.join, 5)
            if not thread.is_alive():
                for fd in self.waker:
                    os.close(fd)
                self.waker = None

    def wake(self) -> None:
        """End the capture thread's wait: a change of watches, or the stop."""
        if self.waker is not None:
            with contextlib.suppress(BlockingIOError):  # a byte is already waiting
                os.write(self.waker[1], b"w")

    def change(self, ns: str, watch: Watch | None) -> None:
        self.changes.put((ns, watch))
        self.wake()

    async def refresh(self) -> None:
        """Open a watch for each namespace with a process in it; retire the empty ones."""
        found = self.netns.find()
        for ns in self.watched.keys() - found.keys():
            del self.watched[ns]
            self.change(ns, None)
            self.ctx.names.forget(ns)
        self.failed &= found.keys()
        cap, unwatched = min(self.cfg.max_namespaces, max_watches()), 0
        for ns, pid in sorted(found.items(), key=lambda item: item[0] != ""):  # own ns first
            if ns in self.watched or ns in self.failed:
                continue
            if ns and len(self.watched) >= cap:
                unwatched += 1  # bounded: a namespace flood cannot exhaust the agent's fds
                continue
            ns_file = f"{self.procfs}/{pid}/ns/net" if ns else None
            try:
                watch = await asyncio.to_thread(open_watch, ns, ns_file, self.cfg.snaplen)
            except OSError as exc:
                self.failed.add(ns)
                metrics.errors.labels("collector.traffic").inc()
                if not ns:
                    self.report(False, f"no packet capture: {exc.strerror or exc}")
                    return
                log.info("traffic: cannot watch %s: %s", ns, exc)
                continue
            self.watched[ns] = watch
            self.change(ns, watch)
        if "" not in self.watched:
            return
        if unwatched:
            metrics.errors.labels("collector.traffic.namespace_cap").inc()
            reason = (
                f"namespaces beyond {cap} (traffic.max_namespaces, or one per "
                f"{FDS_PER_WATCH} allowed open files) are not watched"
            )
            self.report(False, reason, severity="medium", unwatched=unwatched)
        elif time.monotonic() - self.last_drop < DROP_HOLD:
            reason = "packets dropped: the capture fell behind (socket buffer full)"
            self.report(False, reason, dropped=self.dropped, severity="medium")
        else:
            self.report(True, namespaces=len(self.watched))

    # --- the capture thread --------------------------------------------------------------

    def capture(self) -> None:
        assert self.waker is not None
        watches: dict[str, Watch] = {}
        sel = selectors.DefaultSelector()  # epoll: no FD_SETSIZE limit as select() has
        sel.register(self.waker[0], selectors.EVENT_READ, None)
        next_stats = time.monotonic() + STATS_EVERY
        try:
            while not self.stop.is_set():
                while not self.changes.empty():
                    ns, watch = self.changes.get()
                    old = watches.pop(ns, None)
                    if old is not None:
                        sel.unregister(old.packets)
                        old.close()
                    if watch is not None:
                        watches[ns] = watch
                        sel.register(watch.packets, selectors.EVENT_READ, watch)
                packets = False
                for key, _ in sel.select(self.wait_time(next_stats)):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.waker[0], 64)
                    else:
                        self.drain(key.data)
                        packets = True
                self.resolve()
                self.flush(watches.values())
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + STATS_EVERY
                    self.kernel_drops(watches.values())
                if packets:
                    self.stop.wait(GATHER)
        finally:
            sel.close()
            for watch in watches.values():
                watch.close()

    def wait_time(self, next_stats: float) -> float:
        """How long the capture thread may wait for packets: POLL while copies or partial
        flows wait on the clock, else until the drop counters are due (no idle wake-ups)."""
        if self.ownerless or self.flows.pending:
            return POLL
        return max(0.0, next_stats - time.monotonic())

    def drain(self, watch: Watch) -> None:
        for _ in range(BATCH):
            try:
                data, addr = watch.packets.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("traffic: read failed in %s: %s", watch.ns or "own namespace", exc)
                metrics.errors.labels("collector.traffic").inc()
                return
            try:
                self.packet(watch, data, addr[2] == capture.PACKET_OUTGOING)
            except Exception:
                log.exception("traffic: packet handling failed")
                metrics.errors.labels("collector.traffic").inc()

    def packet(self, watch: Watch, data: bytes, outgoing: bool) -> None:
        pkt = decode(data)
        if pkt is None:
            self.counts["other"] += 1
            return
        if 53 in (pkt.sport, pkt.dport):
            self.dns(watch, pkt, outgoing)
            if pkt.proto == "udp":
                return
        if pkt.proto != "tcp" or not pkt.payload:
            self.counts["other"] += 1
            return
        self.counts["payload"] += 1
        key = (watch.ns, pkt.flow)
        buf = self.flows.add(key, pkt.seq, pkt.payload)
        if buf is None:
            return
        need = payload.tls_record_size(buf)
        whole = len(pkt.payload) == pkt.size  # not cut by the snap length
        unfinished = need and len(buf) < min(need, self.cfg.flow_bytes) and whole
        if unfinished and not payload.tls_sni(buf):  # with a name, do not wait for the rest:
            self.flows.wait(key, pkt.seq + pkt.size, buf)  # it may pass before the filter
            return  # follows the flow
        who = role(buf)
        if who is None or (who == "client") != outgoing:
            return
        if self.budget.bump((pkt.flow, who)) > MESSAGES_PER_FLOW:
            return
        self.attribute(watch, pkt, who, buf)

    def dns(self, watch: Watch, pkt: Packet, outgoing: bool) -> None:
        """A query counts where it leaves; an answer where it arrives, if it answers one."""
        msg = dns.unframe(pkt.payload, pkt.proto)
        if not msg:
            return
        try:
            qid, name = dns.question(msg)
            if outgoing:
                if pkt.dport == 53 and not msg[2] & 0x80:
                    self.asked.add((watch.ns, pkt.flow, qid, name))
                return
            if pkt.sport != 53:
                return
            flow = (pkt.proto, pkt.dst, pkt.dport, pkt.src, pkt.sport)
            if not self.asked.answers((watch.ns, flow, qid, name)):
                self.counts["unasked"] += 1
                return
            answers = dns.parse_response(msg)
        except dns.Malformed:
            self.counts["malformed"] += 1
            return
        self.counts["dns"] += 1
        for answer in answers:
            self.ctx.names.add(watch.ns, answer)

    def attribute(self, watch: Watch, pkt: Packet, who: str, buf: bytes) -> None:
        """Find the local socket now; its owner, if not known, with the others the same
        reads named (`resolve`: one /proc scan for all)."""
        lip, lport, rip, rport = ends(pkt, who)
        inode = self.inode(watch, pkt.family, lip, lport, rip, rport)
        pid = self.owners.get(inode) if inode else 0
        retry = pid == 0 and inode and time.monotonic() >= self.missed.get(inode, 0.0)
        if pid is None or retry or (pid and not os.path.exists(f"{self.procfs}/{pid}")):
            self.unresolved.append((inode, watch, pkt, who, buf))
            return
        self.finish(watch, pkt, who, buf, pid)

    def resolve(self) -> None:
        """The owners of the sockets the last reads named, in one scan of /proc/*/fd."""
        if not self.unresolved:
            return
        batch, self.unresolved = self.unresolved, []
        inodes = {item[0] for item in batch}
        found = fdowners.socket_owners(inodes, self.procfs, first=self.ctx.procs.recent())
        now = time.monotonic()
        for inode in inodes:
            self.owners[inode] = found.get(inode, 0)
            self.owners.move_to_end(inode)
            if inode not in found:  # no process held it a moment ago: not another pass soon
                self.missed[inode] = now + MISS_AGAIN
                self.missed.move_to_end(inode)
        while len(self.owners) > OWNERS_KEPT:
            self.owners.popitem(last=False)
        while len(self.missed) > OWNERS_KEPT:
            self.missed.popitem(last=False)
        for inode, watch, pkt, who, buf in batch:
            try:
                self.finish(watch, pkt, who, buf, found.get(inode, 0))
            except Exception:
                log.exception("traffic: packet handling failed")
                metrics.errors.labels("collector.traffic").inc()

    def finish(self, watch: Watch, pkt: Packet, who: str, buf: bytes, pid: int) -> None:
        """The process, the remote end and its name, then the event."""
        lip, lport, rip, rport = ends(pkt, who)
        proc = self.ctx.procs.get(pid) if pid else None
        sent = (payload.tls_sni(buf) or payload.http_host(buf)) if who == "client" else None
        names = (sent,) if sent else self.ctx.names.names(watch.ns, rip)
        domain, aliases = (names[0], names[1:]) if names else (None, ())
        conn = Connection(netcol.endpoint(lip, lport), rip, rport, "tcp", domain, aliases)
        event = FlowPayload(time.time(), conn, proc, who, buf, watch.ns)
        digest = (pkt.flow, who, hashlib.blake2b(buf[:512], digest_size=8).digest())
        if proc is None:
            self.ownerless.setdefault(digest, (time.monotonic() + OWNERLESS_WAIT, event))
            return
        self.ownerless.pop(digest, None)
        if self.sent.bump(digest) == 1:
            self.publish(event, sent)

    def publish(self, event: FlowPayload, sent: str | None) -> None:
        self.emit(event)
        if sent:
            self.emit(NetConn(event.time, event.conn, event.proc, "ESTABLISHED"))

    def inode(self, watch: Watch, family: int, lip: str, lport: int, rip: str, rport: int) -> int:
        """The inode of the TCP socket with these ends in the watch's namespace (0: none)."""
        if watch.diag is None:
            return 0
        try:
            inode = netcol.diag_find(watch.diag, family, lip, lport, rip, rport)
            if not inode and family == socket.AF_INET:  # a dual-stack socket
                mapped = (netcol.MAPPED + lip, netcol.MAPPED + rip)
                inode = netcol.diag_find(
                    watch.diag, socket.AF_INET6, mapped[0], lport, mapped[1], rport
                )
        except OSError as exc:
            log.info("traffic: sock_diag lookup failed: %s", exc)
            return 0
        return inode

    def flush(self, watches: Iterable[Watch]) -> None:
        """Publish copies nobody owned once their wait is over; retune follow filters."""
        for kind, n in self.counts.items():
            if n:
                metrics.traffic_packets.labels(kind).inc(n)
                self.counts[kind] = 0
        now = time.monotonic()
        for digest, (deadline, event) in list(self.ownerless.items()):
            if deadline <= now:
                del self.ownerless[digest]
                if self.sent.bump(digest) == 1:
                    self.publish(event, None)
        pending = self.flows.keys()
        for watch in watches:
            follow = frozenset((f[2], f[4]) for ns, f in pending if ns == watch.ns)
            if follow != watch.follow:
                watch.follow = follow
                capture.attach(watch.packets, capture.program(self.cfg.snaplen, follow))

    def kernel_drops(self, watches: Iterable[Watch]) -> None:
        """Packets the kernel dropped because the socket buffer was full: a metric, and a
        degraded state that `refresh` reports (a flood can hide one opening in the loss)."""
        for watch in watches:
            with contextlib.suppress(OSError):
                raw = watch.packets.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                _, drops = struct.unpack("=II", raw)
                if drops:
                    metrics.events_dropped.labels("traffic").inc(drops)
                    self.dropped += drops
                    self.last_drop = time.monotonic()
