"""DNS responses into (asked name, address, ttl), CNAME chains followed, and the queries
seen leaving, so that only an answer to one of them is believed.

A compression pointer must point before the name that uses it, so no pointer can loop;
hostile or cut messages raise Malformed or give no answers.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from dataclasses import dataclass

A, CNAME, AAAA, IN = 1, 5, 28, 1
MAX_RECORDS = 64
MAX_NAME = 255
MAX_JUMPS = 16
QUESTION_POINTER = b"\xc0\x0c"  # a pointer to offset 12, where the question's name is


class Malformed(ValueError):
    """Not a DNS message this parser accepts."""


@dataclass(frozen=True, slots=True)
class Answer:
    name: str  # the name asked for
    addr: str
    ttl: int
    chain: tuple[str, ...] = ()  # CNAME targets from the asked name to the address


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """The name at `off` and the offset after it; pointers only ever point backwards."""
    labels: list[str] = []
    size, jumps, end, floor = 0, 0, -1, off
    while True:
        if off >= len(msg):
            raise Malformed("name runs past the message")
        length = msg[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise Malformed("cut pointer")
            target = ((length & 0x3F) << 8) | msg[off + 1]
            if target >= floor or jumps >= MAX_JUMPS:
                raise Malformed("pointer loops or points forward")
            jumps += 1
            if end < 0:
                end = off + 2
            off = floor = target
            continue
        if length & 0xC0:
            raise Malformed("unknown label type")
        if length == 0:
            return ".".join(labels).lower(), end if end >= 0 else off + 1
        label = msg[off + 1 : off + 1 + length]
        size += length + 1
        if len(label) < length or size > MAX_NAME:
            raise Malformed("label runs past the message or name too long")
        labels.append(label.decode("ascii", "backslashreplace"))
        off += 1 + length


def parse_response(msg: bytes) -> list[Answer]:
    """The addresses a DNS response gives for its question, with CNAMEs followed."""
    if len(msg) < 12:
        raise Malformed("short header")
    flags = int.from_bytes(msg[2:4], "big")
    qd, an = int.from_bytes(msg[4:6], "big"), int.from_bytes(msg[6:8], "big")
    if not flags & 0x8000 or flags & 0x000F or qd != 1 or an > MAX_RECORDS:
        return []  # a query, an error, or more than one question
    asked, off = read_name(msg, 12)
    off += 4
    cnames: dict[str, str] = {}
    addrs: list[tuple[str, str, int]] = []
    for _ in range(an):
        if msg[off : off + 2] == QUESTION_POINTER:  # the usual owner: the question's name
            owner, off = asked, off + 2
        else:
            owner, off = read_name(msg, off)
        if off + 10 > len(msg):
            raise Malformed("cut record")
        kind = int.from_bytes(msg[off : off + 2], "big")
        klass = int.from_bytes(msg[off + 2 : off + 4], "big")
        ttl = int.from_bytes(msg[off + 4 : off + 8], "big")
        length = int.from_bytes(msg[off + 8 : off + 10], "big")
        data_off, off = off + 10, off + 10 + length
        if off > len(msg):
            raise Malformed("cut record data")
        if klass != IN:
            continue
        if kind == CNAME:
            cnames.setdefault(owner, read_name(msg, data_off)[0])
        elif kind in (A, AAAA) and length == (4 if kind == A else 16):
            family = socket.AF_INET if kind == A else socket.AF_INET6
            addrs.append((owner, socket.inet_ntop(family, msg[data_off:off]), ttl))
    chain = [asked]
    while chain[-1] in cnames and len(chain) <= MAX_JUMPS and cnames[chain[-1]] not in chain:
        chain.append(cnames[chain[-1]])
    return [
        Answer(asked, addr, ttl, tuple(chain[1:])) for owner, addr, ttl in addrs if owner in chain
    ]


def unframe(data: bytes, proto: str) -> bytes:
    """The DNS message of a UDP payload, or the length-prefixed one at the start of a TCP
    segment (b"" if cut)."""
    if proto == "udp":
        return data
    size = int.from_bytes(data[:2], "big")
    return data[2 : 2 + size] if len(data) >= 2 and size <= len(data) - 2 else b""


def question(msg: bytes) -> tuple[int, str]:
    """The id and the asked name of a message with one question."""
    if len(msg) < 12 or int.from_bytes(msg[4:6], "big") != 1:
        raise Malformed("not one question")
    return int.from_bytes(msg[:2], "big"), read_name(msg, 12)[0]


class Asked:
    """Queries seen leaving, by whatever names them (namespace, ends, id, name), for
    `timeout` seconds; at most `size`, the oldest forgotten first."""

    def __init__(self, size: int = 4096, timeout: float = 10.0) -> None:
        self.size, self.timeout = size, timeout
        self.pending: OrderedDict[tuple[object, ...], float] = OrderedDict()

    def add(self, key: tuple[object, ...]) -> None:
        self.pending[key] = time.monotonic() + self.timeout
        self.pending.move_to_end(key)
        while len(self.pending) > self.size:
            self.pending.popitem(last=False)

    def answers(self, key: tuple[object, ...]) -> bool:
        """Whether a response with this key answers a query still waiting."""
        return self.pending.get(key, 0.0) >= time.monotonic()
