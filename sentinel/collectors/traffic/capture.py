"""AF_PACKET capture with a classic BPF program: only DNS answers and flow openings pass.

The kernel runs the filter on every packet of the namespace and copies to the agent only
what it accepts, cut to the snap length. Accepted: UDP and TCP from port 53 arriving in
the namespace (answers) and UDP to port 53 leaving it (the queries they must answer), TCP
to port 53;
TCP segments whose payload starts like a TLS ClientHello (16 03 xx xx xx 01), a JSON
object (`{` then `"` or white space, after at most MAX_SPACE bytes of white space:
stratum JSON-RPC), or an HTTP/1 request method; and
every payload segment of the few flows whose first segment left a record unfinished (a
ClientHello split over segments), named by their port pair. Bulk data (training traffic,
NCCL, downloads) starts with none of these at a segment boundary except by chance, about
one segment in 2^16 for `{"`, so it is never copied.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable

# linux/filter.h
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, MSH = 0x00, 0x20, 0x40, 0x60, 0xA0
ADD, SUB, AND, RSH = 0x00, 0x10, 0x50, 0x70
JA, JEQ, JGT, JSET = 0x00, 0x10, 0x20, 0x40
K, X = 0x00, 0x08
TAX, TXA = 0x00, 0x80
SKF_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + SKF_AD_PROTOCOL: skb->protocol
SKF_AD_PKTTYPE = 0xFFFFF004  # skb->pkt_type
SO_ATTACH_FILTER = 26
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING = 4
TLS_START, BRACE = 0x1603, ord("{")
SPACE = b" \n\r\t"
AFTER_BRACE = b'"' + SPACE
MAX_SPACE = 16  # white space bytes before a JSON object's brace that the filter skips
HTTP_WORDS = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN")
MAX_FOLLOW = 16

Insn = tuple[int, int, int, int]


class Asm:
    """A classic BPF program with symbolic jump targets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, k: int = 0) -> None:
        self.code.append((code, 0, 0, k))

    def goto(self, target: str) -> None:
        self.code.append((JMP | JA, target, 0, 0))

    def jeq(self, k: int, yes: str, no: str | int = 0) -> None:
        self.code.append((JMP | JEQ | K, yes, no, k))

    def jump(self, code: int, k: int, yes: str | int, no: str | int) -> None:
        self.code.append((code, yes, no, k))

    def build(self) -> list[Insn]:
        out = []
        for n, (code, jt, jf, k) in enumerate(self.code):

            def rel(t: str | int, n: int = n) -> int:
                off = self.labels[t] - n - 1 if isinstance(t, str) else t
                if not 0 <= off <= 255:
                    raise ValueError(f"BPF jump out of range at {n}")
                return off

            if code == JMP | JA:
                out.append((code, 0, 0, rel(jt)))
            else:
                out.append((code, rel(jt), rel(jf), k & 0xFFFFFFFF))
        return out


def program(snaplen: int, follow: Iterable[tuple[int, int]] = ()) -> list[Insn]:
    """The filter for SOCK_DGRAM packet sockets (the data starts at the IP header)."""
    a = Asm()
    a.op(LD | W | ABS, SKF_AD_PROTOCOL)
    a.jeq(ETH_P_IP, "v4")
    a.jeq(ETH_P_IPV6, "v6", "drop")
    a.label("v4")
    a.op(LD | H | ABS, 6)
    a.jump(JMP | JSET | K, 0x1FFF, "drop", 0)  # a later fragment
    a.op(LD | B | ABS, 9)
    a.op(ST, 0)  # M[0] = transport protocol
    a.op(LD | H | ABS, 2)
    a.op(ST, 1)  # M[1] = IP length
    a.op(LDX | B | MSH, 0)  # X = IP header length
    a.goto("transport")
    a.label("v6")
    a.op(LD | B | ABS, 6)
    a.op(ST, 0)
    a.op(LD | H | ABS, 4)
    a.op(ALU | ADD | K, 40)
    a.op(ST, 1)
    a.op(LDX | W | IMM, 40)
    a.label("transport")
    a.op(LD | W | MEM, 0)
    a.jeq(socket.IPPROTO_TCP, "tcp")
    a.jeq(socket.IPPROTO_UDP, "udp", "drop")
    a.label("udp")
    a.op(LD | H | IND, 0)
    a.jeq(53, "answer")
    a.op(LD | H | IND, 2)
    a.jeq(53, "query", "drop")
    a.label("tcp")
    a.op(STX, 2)  # M[2] = transport offset
    a.op(LD | B | IND, 12)
    a.op(ALU | RSH | K, 2)
    a.op(ALU | AND | K, 0x3C)  # TCP header length
    a.op(ALU | ADD | X, 0)
    a.op(ST, 3)  # M[3] = payload offset
    a.op(MISC | TAX, 0)
    a.op(LD | W | MEM, 1)
    a.op(ALU | SUB | X, 0)  # payload length (IP length - payload offset)
    a.jeq(0, "drop")
    a.jump(JMP | JGT | K, 0xFFFF, "drop", 0)  # the IP length was shorter than the headers
    a.op(LDX | W | MEM, 2)
    a.op(LD | H | IND, 0)
    a.jeq(53, "answer")
    a.op(LD | H | IND, 2)
    a.jeq(53, "accept")  # DNS over TCP: a query, or a flow opening on port 53
    follow = list(follow)[:MAX_FOLLOW]
    if follow:
        a.op(LD | W | IND, 0)  # both ports
        for sport, dport in follow:
            a.jeq((sport << 16) | dport, "accept")
    a.op(LDX | W | MEM, 3)
    a.op(LD | B | IND, 0)
    a.jeq(BRACE, "brace")
    for c in SPACE:
        a.jeq(c, "to_space")
    a.goto("not_space")
    a.label("to_space")
    a.goto("space")
    a.label("not_space")
    a.op(LD | H | IND, 0)
    a.jeq(TLS_START, "tls")
    a.op(LD | W | IND, 0)
    for word in HTTP_WORDS:
        a.jeq(int.from_bytes(word, "big"), "accept")
    a.op(RET | K, 0)
    a.label("tls")
    a.op(LD | B | IND, 5)
    a.jeq(1, "accept", "drop")
    a.label("brace")
    a.op(LD | B | IND, 1)
    for c in AFTER_BRACE:
        a.jeq(c, "accept")
    a.goto("drop")
    a.label("query")  # a DNS query counts where it leaves
    a.op(LD | W | ABS, SKF_AD_PKTTYPE)
    a.jeq(PACKET_OUTGOING, "accept", "drop")
    a.label("answer")  # a DNS answer counts where it arrives, not where it leaves
    a.op(LD | W | ABS, SKF_AD_PKTTYPE)
    a.jeq(PACKET_OUTGOING, "drop", "accept")
    a.label("drop")
    a.op(RET | K, 0)
    a.label("accept")
    a.op(RET | K, snaplen)
    a.label("space")  # white space before the object, as JSON allows
    for i in range(1, MAX_SPACE + 1):
        a.op(LD | B | IND, i)
        a.jeq(BRACE, f"brace{i}")
        for c in SPACE:
            a.jeq(c, f"space{i}")
        a.op(RET | K, 0)
        a.label(f"brace{i}")
        a.op(MISC | TXA, 0)
        a.op(ALU | ADD | K, i)
        a.op(MISC | TAX, 0)  # X = the brace's offset
        a.goto("spaced_brace")
        a.label(f"space{i}")
    a.op(RET | K, 0)
    a.label("spaced_brace")
    a.op(LD | B | IND, 1)
    for c in AFTER_BRACE:
        a.jeq(c, "spaced_accept")
    a.op(RET | K, 0)
    a.label("spaced_accept")
    a.op(RET | K, snaplen)
    return a.build()


def attach(sock: socket.socket, insns: list[Insn]) -> None:
    """Replace the socket's filter atomically (SO_ATTACH_FILTER)."""
    import ctypes

    raw = b"".join(struct.pack("=HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(insns), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def bind_all(sock: socket.socket) -> None:
    """Bind to ETH_P_ALL on every interface (ifindex 0, which Python's bind cannot name)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    addr = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), 0, 0, 0, 0, b"")
    if libc.bind(sock.fileno(), addr, len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind AF_PACKET: {os.strerror(err)}")


def open_socket(snaplen: int, rcvbuf: int) -> socket.socket:
    """A non-blocking packet socket on every interface of the calling thread's namespace.

    The filter goes on before the socket is bound to ETH_P_ALL, so nothing unfiltered is
    ever queued.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        attach(sock, program(snaplen))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        bind_all(sock)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
