"""Traffic rules on plain FlowPayload fixtures."""

from __future__ import annotations

import time

import pytest
from fakes import context, proc
from wire import client_hello, stratum_line, xmrig_login

from sentinel.core import config
from sentinel.core.events import FlowPayload
from sentinel.core.model import Connection, Finding, Proc, Severity
from sentinel.detectors.traffic import TrafficDetector


@pytest.fixture(scope="module")
def det() -> TrafficDetector:
    return TrafficDetector(context())


def run(
    det: TrafficDetector, data: bytes, p: Proc | None, role: str = "client"
) -> dict[str, Finding]:
    conn = Connection("198.51.100.2:40000", "198.51.100.1", 443, "tcp")
    found = list(det.handle(FlowPayload(time.time(), conn, p, role, data)))
    return {f.rule: f for f in found}


def test_stratum_login_from_a_plain_python_is_high(det: TrafficDetector) -> None:
    worker = proc(name="python3", exe="/usr/bin/python3.11", cmdline=["python3", "train.py"])
    found = run(det, xmrig_login("4ABC", "hunter2"), worker)
    f = found["network.stratum_protocol"]
    assert f.severity == Severity.HIGH and f.process is worker
    assert f.evidence["agent"].startswith("XMRig/") and "hunter2" not in str(f.to_record())
    assert "sent stratum login on port 443" in f.summary


def test_server_job_names_the_receiver(det: TrafficDetector) -> None:
    job = stratum_line("mining.notify", ["j1", "00" * 32, "01", "02", [], "20000000", "1d00ffff"])
    f = run(det, job, proc(), role="server")["network.stratum_protocol"]
    assert "received stratum mining.notify" in f.summary


def test_json_rpc_that_is_not_stratum_is_nothing(det: TrafficDetector) -> None:
    assert run(det, stratum_line("eth_blockNumber", []), proc()) == {}
    assert run(det, b'{"user": "a", "method": "login"}\n', proc()) == {}


@pytest.mark.parametrize(
    ("name", "exe", "expect"),
    [("python3", "/usr/bin/python3", True), ("firefox", "/usr/lib/firefox/firefox", False)],
)
def test_doh_from_a_non_browser_is_low(
    det: TrafficDetector, name: str, exe: str, expect: bool
) -> None:
    found = run(det, client_hello("cloudflare-dns.com"), proc(name=name, exe=exe))
    assert ("network.doh_resolver" in found) is expect
    if expect:
        assert found["network.doh_resolver"].severity == Severity.LOW


def test_ordinary_tls_is_nothing(det: TrafficDetector) -> None:
    assert run(det, client_hello("pypi.org"), proc()) == {}


@pytest.mark.parametrize("key", ["snaplen", "flow_bytes", "map_size"])
def test_traffic_limits_are_checked(key: str) -> None:
    with pytest.raises(config.ConfigError, match=rf":2: traffic\.{key}: must be between"):
        config.parse(f"[traffic]\n{key} = 0\n", "x.toml")
