"""Network rules on plain fixture events."""

from __future__ import annotations

import time

import pytest
from fakes import context, proc

from sentinel.core.events import NetConn
from sentinel.core.model import Category, Connection, Finding, Proc, Severity
from sentinel.detectors.network import NetworkDetector


@pytest.fixture(scope="module")
def det() -> NetworkDetector:
    return NetworkDetector(context())


def conn(rport: int, raddr: str = "127.0.0.1", domain: str | None = None) -> Connection:
    return Connection("127.0.0.1:40000", raddr, rport, "tcp", domain)


def run(
    det: NetworkDetector, c: Connection, p: Proc | None, state: str = "ESTABLISHED"
) -> dict[str, Finding]:
    found = list(det.handle(NetConn(time.time(), c, p, state)))
    for f in found:
        assert f.connection is c and f.process is p
    return {f.rule: f for f in found}


PLAIN = proc(name="python3", exe="/usr/bin/python3.11", cmdline=["python3", "client.py"])


@pytest.mark.parametrize(
    ("p", "severity"),
    [
        (proc(name="xmrig", exe="/opt/x/xmrig", cmdline=["./xmrig"]), Severity.HIGH),
        (proc(name="w", exe="/opt/w", cmdline=["w", "--donate-level", "1"]), Severity.HIGH),
        (
            proc(name="w", exe="/opt/w", cmdline=["w", "-c", "cfg.json", "-o", "minepool.test:80"]),
            Severity.HIGH,
        ),
        (proc(name="w", exe="/tmp/x/w", cmdline=["w", "-c", "cfg.json"]), Severity.MEDIUM),
        (proc(name="w", exe="/opt/w", cmdline=["w"], exe_deleted=True), Severity.MEDIUM),
        (
            proc(name="s", exe="/usr/bin/python3.11", cmdline=["python3", "/tmp/j/s"]),
            Severity.MEDIUM,
        ),
        (PLAIN, Severity.LOW),
        (None, Severity.LOW),
    ],
)
def test_pool_port_graded_by_corroboration(
    det: NetworkDetector, p: Proc | None, severity: Severity
) -> None:
    f = run(det, conn(3333), p)["network.pool_port"]
    assert f.severity == severity and f.category == Category.NETWORK
    assert f.evidence["rport"] == 3333


def test_dev_ports_and_listeners_alone_are_quiet(det: NetworkDetector) -> None:
    miner = proc(name="xmrig", exe="/opt/x/xmrig", cmdline=["./xmrig"])
    for port in (8000, 8080, 8888, 443, 80):
        assert run(det, conn(port), PLAIN) == {}
        assert run(det, conn(port), miner) == {}
    assert run(det, conn(3333), miner, state="LISTEN") == {}
    assert run(det, conn(3333, raddr="0.0.0.0"), miner, state="") == {}


def test_stratum_url_port_of_its_own_command_line(det: NetworkDetector) -> None:
    p = proc(name="w", exe="/opt/w", cmdline=["w", "-o", "stratum+ssl://127.0.0.1:8080"])
    f = run(det, conn(8080), p)["network.stratum_connection"]
    assert f.severity == Severity.HIGH
    assert run(det, conn(8081), p) == {}


def test_names_the_process_used(det: NetworkDetector) -> None:
    tunnel = proc(
        name="ssh", exe="/usr/bin/ssh", cmdline=["ssh", "-R", "80:localhost:8000", "a.tunnel.test"]
    )
    f = run(det, conn(22, raddr="198.51.100.7"), tunnel)["tunnel.service_domain"]
    assert f.category == Category.TUNNEL and f.severity == Severity.HIGH
    assert f.evidence["names"] == ["a.tunnel.test"]
    dyn = proc(name="curl", exe="/usr/bin/curl", cmdline=["curl", "http://box.dyn.test:8080/x"])
    f = run(det, conn(8080, raddr="198.51.100.8"), dyn)["network.dyndns"]
    assert f.severity == Severity.MEDIUM
    assert run(det, conn(443, raddr="198.51.100.9"), PLAIN) == {}


def test_domain_of_the_socket(det: NetworkDetector) -> None:
    f = run(det, conn(443, raddr="198.51.100.1", domain="eu.minepool.test"), PLAIN)
    assert f["network.pool_domain"].severity == Severity.HIGH
    # a pool domain only in the command line is the process rules' job, not a second alert
    p = proc(name="w", exe="/opt/w", cmdline=["w", "--host", "eu.minepool.test"])
    assert run(det, conn(443, raddr="198.51.100.1"), p) == {}
