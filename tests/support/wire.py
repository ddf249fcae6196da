"""Protocol bytes built at test time: TLS ClientHello, DNS queries and answers, stratum."""

from __future__ import annotations

import json
import os
import struct


def client_hello(sni: str | None, pad: int = 0, pad_after: int = 0) -> bytes:
    """A TLS 1.3-style ClientHello record; `pad` bytes of padding extension before the SNI,
    `pad_after` bytes of another extension after it."""
    exts = b""
    if sni is not None:
        entry = b"\0" + struct.pack(">H", len(sni)) + sni.encode()
        body = struct.pack(">H", len(entry)) + entry
        exts += struct.pack(">HH", 0, len(body)) + body
    exts = struct.pack(">HH", 0x0015, pad) + bytes(pad) + exts
    if pad_after:
        exts += struct.pack(">HH", 0xFE0D, pad_after) + os.urandom(pad_after)  # like ECH
    hello = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x20"
        + os.urandom(32)
        + struct.pack(">H", 4)
        + b"\x13\x01\x13\x02"
        + b"\x01\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    hs = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_query(name: str, qid: int = 0x1234) -> bytes:
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname(name) + b"\0\1\0\1"


def dns_answer(name: str, addr: bytes, ttl: int = 300, qid: int = 0x1234) -> bytes:
    """A response with one A (4-byte addr) or AAAA (16-byte addr) record for `name`."""
    kind = 1 if len(addr) == 4 else 28
    head = struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0)
    rr = b"\xc0\x0c" + struct.pack(">HHIH", kind, 1, ttl, len(addr)) + addr
    return head + qname(name) + b"\0\1\0\1" + rr


def stratum_line(method: str, params: object, msg_id: int = 1) -> bytes:
    return (
        json.dumps({"id": msg_id, "jsonrpc": "2.0", "method": method, "params": params}).encode()
        + b"\n"
    )


def xmrig_login(wallet: str, password: str = "x") -> bytes:
    params = {
        "login": wallet,
        "pass": password,
        "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2",
        "algo": ["rx/0"],
    }
    return stratum_line("login", params)
