"""IPv4/IPv6 TCP and UDP packets (link header already stripped) and per-flow reassembly."""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from dataclasses import dataclass

TCP, UDP = 6, 17
Flow = tuple[str, str, int, str, int]
Key = tuple[str, Flow]  # (namespace, flow)


@dataclass(frozen=True, slots=True)
class Packet:
    proto: str  # tcp | udp
    family: int
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    payload: bytes  # cut to the snap length
    size: int  # the payload's length on the wire

    @property
    def flow(self) -> Flow:
        return (self.proto, self.src, self.sport, self.dst, self.dport)


def decode(pkt: bytes) -> Packet | None:
    """The transport header and payload of an IP packet, or None (fragment, other proto)."""
    if len(pkt) < 20:
        return None
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        total = int.from_bytes(pkt[2:4], "big")
        if ihl < 20 or int.from_bytes(pkt[6:8], "big") & 0x1FFF:
            return None  # a later fragment has no transport header
        proto, family = pkt[9], socket.AF_INET
        src, dst = pkt[12:16], pkt[16:20]
        body = pkt[ihl : max(ihl, total) if total else len(pkt)]
        wire = (total or len(pkt)) - ihl
    elif version == 6 and len(pkt) >= 40:
        proto, family = pkt[6], socket.AF_INET6
        src, dst = pkt[8:24], pkt[24:40]
        wire = int.from_bytes(pkt[4:6], "big")
        body = pkt[40 : 40 + wire]
    else:
        return None
    if proto == TCP and len(body) >= 20:
        offset = (body[12] >> 4) * 4
        if offset < 20:
            return None
        seq, payload, name = int.from_bytes(body[4:8], "big"), body[offset:], "tcp"
    elif proto == UDP and len(body) >= 8:
        seq, payload, name, offset = 0, body[8:], "udp", 8
    else:
        return None
    size = max(0, wire - offset)
    return Packet(
        name,
        family,
        socket.inet_ntop(family, src),
        int.from_bytes(body[0:2], "big"),
        socket.inet_ntop(family, dst),
        int.from_bytes(body[2:4], "big"),
        seq,
        payload,
        size,
    )


class Reassembly:
    """The first bytes of a flow over in-order segments, up to `cap` bytes per flow.

    `add` returns the bytes so far; the caller says, by `need`, how many it waits for.
    Partial flows are forgotten after `timeout` seconds or when `size` flows are pending.
    """

    def __init__(self, cap: int, size: int = 256, timeout: float = 2.0) -> None:
        self.cap, self.size, self.timeout = cap, size, timeout
        self.pending: OrderedDict[Key, tuple[int, bytes, float]] = OrderedDict()

    def add(self, key: Key, seq: int, data: bytes) -> bytes | None:
        """The bytes of the flow with this segment appended, or None if out of order."""
        entry = self.pending.pop(key, None)
        now = time.monotonic()
        if entry is None or entry[2] < now:
            return data[: self.cap]
        next_seq, buf, _ = entry
        if seq != next_seq:
            return None
        return (buf + data)[: self.cap]

    def wait(self, key: Key, seq: int, buf: bytes) -> None:
        """Keep `buf` (which ends before `seq`) for the flow's next segment."""
        if len(buf) >= self.cap:
            return
        self.pending[key] = (seq & 0xFFFFFFFF, buf, time.monotonic() + self.timeout)
        while len(self.pending) > self.size:
            self.pending.popitem(last=False)

    def keys(self) -> list[Key]:
        now = time.monotonic()
        for key in [k for k, v in self.pending.items() if v[2] < now]:
            del self.pending[key]
        return list(self.pending)
