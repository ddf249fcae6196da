"""Traffic inspection end to end: clients in a test-made "box" namespace talk to servers in
an "inet" namespace over a veth pair on 198.51.100.0/24; the real agent names the client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AgentRun, Record, severity_at_least
from collector_run import Running
from fakes import fake_monero_address
from netpair import BOX_IP, INET_IP, Pair, netpair, ready, watched
from wire import client_hello, dns_answer, dns_query, stratum_line, xmrig_login

from sentinel.collectors.net import in_netns
from sentinel.collectors.traffic import TrafficCollector, capture, collector
from sentinel.collectors.traffic.packets import Packet, decode
from sentinel.core import config
from sentinel.core.events import CollectorState, FlowPayload

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and ip"),
]

POOL_NAME = "xmr-eu.supportxmr.com"  # supportxmr.com is in signatures/pool_domains.txt
POOL_ADDR, GITHUB_ADDR, ALIASED_ADDR = "198.51.100.10", "198.51.100.11", "198.51.100.13"
ALIAS = "cdn-job.example.org"  # a CNAME to the pool name
COUNT = itertools.count()

SERVERS = r"""
import socket, struct, sys, threading
JOB = (b'{"id":1,"jsonrpc":"2.0","error":null,"result":{"id":"w1","job":'
       b'{"blob":"0707","job_id":"9","target":"ffff"},"status":"OK"}}\n')
ANSWERS = dict(a.split("=") for a in sys.argv[1:])

def serve(s, reply):
    while True:
        c, _ = s.accept()
        threading.Thread(target=talk, args=(c, reply), daemon=True).start()

def talk(c, reply):
    with c:
        while data := c.recv(65536):
            if reply is not None and (answer := reply(data)):
                c.sendall(answer)

def pool(data):
    return JOB if b'"login"' in data else b""

def http(data):
    return b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"

def resolver(u):
    while True:
        q, peer = u.recvfrom(512)
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1 : i + 1 + q[i]].decode())
            i += 1 + q[i]
        question, value = q[12 : i + 5], ANSWERS.get(".".join(labels))
        if value is None:
            u.sendto(q[:2] + b"\x81\x83" + q[4:6] + bytes(6) + question, peer)
            continue
        target, _, addr = value.rpartition("@")  # "target@addr": a CNAME, then its A
        a = struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(addr)
        rr, count = b"\xc0\x0c" + a, 1
        if target:
            name = b"".join(bytes([len(p)]) + p.encode() for p in target.split(".")) + b"\0"
            rr = b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 5, len(name)) + name + name + a
            count = 2
        head = q[:2] + b"\x81\x80" + q[4:6] + struct.pack(">H", count) + bytes(4)
        u.sendto(head + question + rr, peer)

for port, reply in ((443, pool), (80, None), (8443, None), (8000, http)):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    threading.Thread(target=serve, args=(s, reply), daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 53))
threading.Thread(target=resolver, args=(u,), daemon=True).start()
print("up", flush=True)
threading.Event().wait()
"""

# An ordinary worker: what it sends comes on stdin, nothing in its argv.
CLIENT = r"""
import json, socket, sys, time
spec = json.loads(sys.stdin.readline())
addr = spec.get("dst")
if "dns" in spec:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(bytes.fromhex(spec["dns"]), (spec["resolver"], 53))
    answer = u.recv(512)
    addr = socket.inet_ntoa(answer[-4:]) if answer[3] & 0x0F == 0 else None
if addr and "port" in spec:
    c = socket.create_connection((addr, spec["port"]), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for part in spec["send"]:
        c.sendall(bytes.fromhex(part))
        time.sleep(spec.get("gap", 0))
print(addr, flush=True)
time.sleep(120)
"""


BULK = r"""
import os, socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
chunk = os.urandom(1 << 20)
for _ in range(int(sys.argv[3])):
    c.sendall(chunk)
c.close()
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as opening:
    opening.sendall(sys.stdin.buffer.read())
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with netpair(extra=(POOL_ADDR, GITHUB_ADDR, ALIASED_ADDR)) as p:
        answers = (f"{POOL_NAME}={POOL_ADDR}", f"github.com={GITHUB_ADDR}")
        servers = p.python(p.inet, SERVERS, *answers, f"{ALIAS}={POOL_NAME}@{ALIASED_ADDR}")
        ready(servers)
        p.resident(p.box)
        yield p


@pytest.fixture(scope="module")
def agent(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    run = AgentRun(tmp_path_factory.mktemp("traffic-agent"))
    run.start()
    try:
        watched(pair.procs[0].pid)  # the servers' namespace
        watched(pair.procs[1].pid)  # the box
        yield run
    finally:
        run.stop()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("workers")


def client(
    pair: Pair, workers: Path, send: tuple[bytes, ...] | list[bytes] = (), **spec: object
) -> int:
    """A python3 worker script in the box doing what `spec` says; its pid once it has sent.

    Each worker is its own script, as distinct jobs are: the engine folds alerts of sibling
    workers of one program into one incident."""
    script = workers / f"job{next(COUNT)}.py"
    script.write_text(CLIENT)
    spec["send"] = [part.hex() for part in send]
    p = pair.run(pair.box, [sys.executable, str(script)], json.dumps(spec).encode() + b"\n")
    ready(p)
    return p.pid


def about(pid: int, rule: str):
    def match(rec: Record) -> bool:
        return rec["rule"] == rule and (rec.get("process") or {}).get("pid") == pid

    return match


def test_stratum_login_on_443_names_the_worker(agent: AgentRun, pair: Pair, workers: Path) -> None:
    password = "pw-" + os.urandom(4).hex()
    pid = client(
        pair, workers, dst=INET_IP, port=443, send=[xmrig_login(fake_monero_address(), password)]
    )
    rec = agent.wait_for(about(pid, "network.stratum_protocol"))
    assert rec["severity"] == "high" and rec["connection"]["rport"] == 443
    assert rec["process"]["name"].startswith("python")
    assert rec["evidence"]["method"] == "login" and "XMRig" in rec["evidence"]["agent"]
    excerpt = rec["evidence"]["excerpt"]
    assert password not in json.dumps(rec) and len(excerpt) <= 200


def test_mining_subscribe_on_port_80(agent: AgentRun, pair: Pair, workers: Path) -> None:
    msg = stratum_line("mining.subscribe", ["cpuminer/2.5.1"])
    pid = client(pair, workers, dst=INET_IP, port=80, send=[msg])
    rec = agent.wait_for(about(pid, "network.stratum_protocol"))
    assert rec["evidence"]["method"] == "mining.subscribe" and rec["connection"]["rport"] == 80


def test_dns_answer_names_a_later_connection(agent: AgentRun, pair: Pair, workers: Path) -> None:
    pid = client(
        pair, workers, dns=dns_query(POOL_NAME).hex(), resolver=INET_IP, port=8443, send=[b"hi\n"]
    )
    rec = agent.wait_for(about(pid, "network.pool_domain"))
    assert rec["connection"]["domain"] == POOL_NAME and rec["connection"]["raddr"] == POOL_ADDR


def test_a_cname_to_a_pool_name_fires_the_domain_rule(
    agent: AgentRun, pair: Pair, workers: Path
) -> None:
    """The name asked for is the process's own alias; the pool's name is the CNAME target."""
    pid = client(
        pair, workers, dns=dns_query(ALIAS).hex(), resolver=INET_IP, port=8443, send=[b"hi\n"]
    )
    rec = agent.wait_for(about(pid, "network.pool_domain"))
    assert rec["connection"]["raddr"] == ALIASED_ADDR and rec["connection"]["domain"] == ALIAS
    assert rec["connection"]["aliases"] == [POOL_NAME]


def test_tls_pool_sni_split_over_two_segments(agent: AgentRun, pair: Pair, workers: Path) -> None:
    hello = client_hello("gulf.moneroocean.stream", pad=700)
    pid = client(pair, workers, dst=INET_IP, port=8443, send=[hello[:300], hello[300:]], gap=0.3)
    rec = agent.wait_for(about(pid, "network.pool_domain"))
    assert rec["connection"]["domain"] == "gulf.moneroocean.stream"


def test_tls_sni_in_the_first_of_two_back_to_back_segments(
    agent: AgentRun, pair: Pair, workers: Path
) -> None:
    """The second segment leaves before the agent can follow the flow; the name was in the
    first."""
    hello = client_hello("pool.hashvault.pro", pad_after=1200)
    pid = client(pair, workers, dst=INET_IP, port=8443, send=[hello[:200], hello[200:]])
    rec = agent.wait_for(about(pid, "network.pool_domain"))
    assert rec["connection"]["domain"] == "pool.hashvault.pro"


@pytest.mark.parametrize(
    ("opening", "rule", "domain"),
    [
        (client_hello("a1b2c3.ngrok.io"), "tunnel.service_domain", "a1b2c3.ngrok.io"),
        (
            b"GET /x HTTP/1.1\r\nHost: box7.duckdns.org\r\n\r\n",
            "network.dyndns",
            "box7.duckdns.org",
        ),
        (
            b"POST /submit HTTP/1.1\r\nHost: pool.supportxmr.com\r\n\r\n",
            "network.pool_domain",
            "pool.supportxmr.com",
        ),
    ],
)
def test_names_sent_in_sni_or_host_fire_the_domain_rules(
    agent: AgentRun, pair: Pair, workers: Path, opening: bytes, rule: str, domain: str
) -> None:
    pid = client(pair, workers, dst=INET_IP, port=8443, send=[opening])
    rec = agent.wait_for(about(pid, rule))
    assert rec["connection"]["domain"] == domain


def test_doh_from_a_non_browser_is_low(agent: AgentRun, pair: Pair, workers: Path) -> None:
    pid = client(pair, workers, dst=INET_IP, port=8443, send=[client_hello("dns.google")])
    rec = agent.wait_for(about(pid, "network.doh_resolver"))
    assert rec["severity"] == "low"


def test_benign_traffic_draws_nothing_at_medium(agent: AgentRun, pair: Pair, workers: Path) -> None:
    benign = [
        client(pair, workers, dst=INET_IP, port=8443, send=[client_hello("pypi.org")]),
        client(
            pair,
            workers,
            dns=dns_query("github.com").hex(),
            resolver=INET_IP,
            port=8443,
            send=[b"x"],
        ),
        client(
            pair,
            workers,
            dst=INET_IP,
            port=8000,
            send=[b"GET / HTTP/1.1\r\nHost: localhost:8000\r\n\r\n"],
        ),
    ]
    # a later stratum login, found, shows the agent has handled what came before it
    pid = client(pair, workers, dst=INET_IP, port=443, send=[xmrig_login(fake_monero_address())])
    agent.wait_for(about(pid, "network.stratum_protocol"))
    loud = [
        r
        for r in agent.records()
        if severity_at_least(r, "medium") and (r.get("process") or {}).get("pid") in benign
    ]
    assert loud == []


async def test_a_veth_crossing_is_reported_once_with_its_sender(pair: Pair, workers: Path) -> None:
    cfg = config.parse("[agent]\ninterval = 0.2\n")
    async with Running(TrafficCollector, cfg) as run:
        await asyncio.to_thread(watched, pair.procs[1].pid)
        await asyncio.to_thread(watched, pair.procs[0].pid)
        line = stratum_line("mining.authorize", ["worker1", "secret"])
        pid = await asyncio.to_thread(
            lambda: client(pair, workers, dst=INET_IP, port=80, send=[line])
        )
        ev = await run.wait(FlowPayload, lambda e: e.data.startswith(line), timeout=10)
        assert ev.role == "client" and ev.proc is not None and ev.proc.pid == pid
        assert ev.conn.raddr == INET_IP and ev.conn.rport == 80
        await asyncio.sleep(1.0)  # longer than a copy nobody owns waits
        assert len(run.of(FlowPayload, lambda e: e.data.startswith(line))) == 1


def test_the_kernel_filter_passes_openings_not_bulk(pair: Pair) -> None:
    """32 MiB of random bytes on one flow pass a handful of packets at most (a segment
    that happens to start like an opening); the stratum line opening the next flow passes."""
    ns_file = f"/proc/{pair.procs[1].pid}/ns/net"
    sock = in_netns(ns_file, lambda: capture.open_socket(2048, 1 << 22))
    try:
        line = stratum_line("mining.subscribe", ["bulk-test"])
        p = pair.run(pair.box, [sys.executable, "-c", BULK, INET_IP, "8443", "32"], line)
        assert ready(p, timeout=30) == "done"
        ours: list[Packet] = []
        deadline = time.monotonic() + 5  # the last segment may leave after send() returns
        while not any(pkt.payload.startswith(line) for pkt in ours):
            assert time.monotonic() < deadline, [pkt.payload[:8] for pkt in ours]
            with contextlib.suppress(BlockingIOError):
                while True:
                    pkt = decode(sock.recv(65535))
                    if pkt is not None and pkt.dport == 8443:
                        ours.append(pkt)
            time.sleep(0.01)
        assert len(ours) <= 8, [pkt.payload[:8] for pkt in ours]
    finally:
        sock.close()


@pytest.mark.parametrize("prefix", [b"\n", b"\r\n \t "], ids=["newline", "white-space"])
def test_stratum_login_after_leading_white_space(
    agent: AgentRun, pair: Pair, workers: Path, prefix: bytes
) -> None:
    """JSON parsers (and so pools) skip white space before the object; so does the filter."""
    pid = client(
        pair, workers, dst=INET_IP, port=443, send=[prefix + xmrig_login(fake_monero_address())]
    )
    rec = agent.wait_for(about(pid, "network.stratum_protocol"))
    assert rec["evidence"]["method"] == "login"


def test_stratum_login_padded_past_the_snap_length(
    agent: AgentRun, pair: Pair, workers: Path
) -> None:
    """A parameter before `login` pushes the wallet, pass and agent past the bytes kept."""
    params = {"rigid": "r" * 3000, "login": fake_monero_address(), "pass": "x", "agent": "XMRig"}
    pid = client(pair, workers, dst=INET_IP, port=443, send=[stratum_line("login", params)])
    rec = agent.wait_for(about(pid, "network.stratum_protocol"))
    assert rec["evidence"]["method"] == "login"


SENDS = r"""
import socket, sys, time
for part in sys.stdin.buffer.read().split(b"\0"):
    with socket.create_connection((sys.argv[1], 8443), timeout=10) as c:
        c.sendall(part)
        time.sleep(0.05)
print("done", flush=True)
"""


def test_the_kernel_filter_verdicts_where_segments_arrive(pair: Pair) -> None:
    """Each opening on its own flow, seen arriving in the servers' namespace."""
    kept = [b'\n{"id":1}', b' \r\n\t {"id":2}', b'{"id":3}', b"\n" * 16 + b'{ "id":4}']
    dropped = [b"{!" + b"x" * 40, b"{\x00" + b"y" * 40, b"\n\nz" * 10, b"\n" * 17 + b'{"id":5}']
    ns_file = f"/proc/{pair.procs[0].pid}/ns/net"
    sock = in_netns(ns_file, lambda: capture.open_socket(2048, 1 << 22))
    try:
        marker = b'{"id":"end"}'
        p = pair.run(
            pair.box, [sys.executable, "-c", SENDS, INET_IP], b"\0".join([*kept, *dropped, marker])
        )
        assert ready(p, timeout=30) == "done"
        seen: list[bytes] = []
        deadline = time.monotonic() + 5
        while marker not in seen:
            assert time.monotonic() < deadline, seen
            with contextlib.suppress(BlockingIOError):
                while True:
                    pkt = decode(sock.recv(65535))
                    if pkt is not None and pkt.dport == 8443 and pkt.payload:
                        seen.append(pkt.payload)
            time.sleep(0.01)
        assert seen == [*kept, marker]
    finally:
        sock.close()


FORGE = r"""
import socket, struct, sys
dst, port, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw.sendto(struct.pack(">HHHH", 53, port, 8 + len(data), 0) + data, (dst, 0))
print("sent", flush=True)
"""


async def test_a_dns_answer_to_no_query_names_nothing(pair: Pair, workers: Path) -> None:
    """A datagram from port 53 that answers no query seen leaving (forged from anywhere on
    the way) does not name an address: it could make pypi.org's address a pool's."""
    forged_addr = "198.51.100.12"
    cfg = config.parse("[agent]\ninterval = 0.2\n")
    async with Running(TrafficCollector, cfg) as run:
        await asyncio.to_thread(watched, pair.procs[1].pid)
        forged = dns_answer(POOL_NAME, socket.inet_aton(forged_addr), qid=0x4242)
        ready(pair.python(pair.inet, FORGE, BOX_IP, "40000", forged.hex()))
        await asyncio.to_thread(
            lambda: client(pair, workers, dns=dns_query("github.com").hex(), resolver=INET_IP)
        )
        names, ns = run.collector.ctx.names, os.readlink(f"/proc/{pair.procs[1].pid}/ns/net")
        deadline = time.monotonic() + 10
        while names.name(ns, GITHUB_ADDR) != "github.com":  # the real answer, after the forged
            assert time.monotonic() < deadline, "the answer to a real query was not mapped"
            await asyncio.sleep(0.05)
        assert names.name(ns, forged_addr) is None


FLOOD = r"""
import socket, struct, sys
dst, n = sys.argv[1], int(sys.argv[2])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
data = bytes(40)
for i in range(n):
    raw.sendto(struct.pack(">HHHH", 53, 40000 + i % 1000, 8 + len(data), 0) + data, (dst, 0))
print("sent", flush=True)
"""


async def test_packets_the_kernel_dropped_make_the_collector_degraded(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of packets the filter passes overflows the socket buffer: the loss is an
    integrity state (a finding), not only a metric."""
    monkeypatch.setattr(collector, "RCVBUF", 0)  # the kernel's minimum
    monkeypatch.setattr(collector, "STATS_EVERY", 0.2)
    cfg = config.parse("[agent]\ninterval = 0.2\n")
    async with Running(TrafficCollector, cfg) as run:
        await asyncio.to_thread(watched, pair.procs[1].pid)
        ready(pair.python(pair.inet, FLOOD, BOX_IP, "5000"), timeout=30)
        state = await run.wait(CollectorState, lambda s: not s.ok, timeout=10)
        assert "dropped" in state.reason and state.detail["dropped"] > 0


BURST = r"""
import socket, sys, time
hello, conns = sys.stdin.buffer.read(), []
for _ in range(20):
    c = socket.create_connection((sys.argv[1], 8443), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns.append(c)
for c in conns:
    c.sendall(hello)
print("sent", flush=True)
time.sleep(60)
"""


async def test_openings_read_together_cost_one_owner_scan(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of openings on new sockets must not cost a /proc fd scan each: a user who
    makes those scans slow (many fds) would otherwise stall the capture with decoys."""
    scans: list[set[int]] = []
    real = collector.fdowners.socket_owners

    def counted(inodes: set[int], procfs: str = "/proc", **kw: Any) -> dict[int, int]:
        scans.append(set(inodes))
        return real(inodes, procfs, **kw)

    monkeypatch.setattr(collector.fdowners, "socket_owners", counted)
    cfg = config.parse("[agent]\ninterval = 0.2\n")
    async with Running(TrafficCollector, cfg) as run:
        await asyncio.to_thread(watched, pair.procs[1].pid)
        p = pair.python(pair.box, BURST, INET_IP, stdin=client_hello("burst.example.org"))
        await asyncio.to_thread(ready, p)
        for _ in range(500):
            if len(run.of(FlowPayload, lambda e: e.proc is not None and e.proc.pid == p.pid)) == 20:
                break
            await asyncio.sleep(0.02)
        ours = {
            int(link[8:-1])
            for fd in os.listdir(f"/proc/{p.pid}/fd")
            if (link := os.readlink(f"/proc/{p.pid}/fd/{fd}")).startswith("socket:[")
        }
        assert len(run.of(FlowPayload, lambda e: e.proc is not None and e.proc.pid == p.pid)) == 20
        assert len([s for s in scans if s & ours]) <= 4
