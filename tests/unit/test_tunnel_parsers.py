"""argv parsers of tunnel tools: what chisel, frpc, gost and cloudflared connect to."""

from __future__ import annotations

import time

import pytest
from fakes import context, proc

from sentinel.core.events import ProcExec
from sentinel.detectors.process import ProcessDetector
from sentinel.rules.fields import tunnels


@pytest.mark.parametrize(
    ("argv", "facts"),
    [
        (
            ["chisel", "client", "--auth", "u:p", "198.51.100.7:8080", "R:2222:localhost:22"],
            {"peer": "198.51.100.7:8080", "reverse": "R:2222:localhost:22"},
        ),
        (["chisel", "client", "198.51.100.7:8080", "3000:db:5432"], {"peer": "198.51.100.7:8080"}),
        (["chisel", "server", "-p", "8080", "--reverse"], {}),
        (
            ["frpc", "tcp", "-s", "198.51.100.7", "-P", "7000", "-l", "22"],
            {"peer": "198.51.100.7:7000"},
        ),
        (["frpc", "-c", "/tmp/frpc.toml"], {"peer": "config /tmp/frpc.toml"}),
        (
            ["gost", "-L", "socks5://:1080", "-F", "relay+tls://198.51.100.7:443"],
            {"peer": "relay+tls://198.51.100.7:443"},
        ),
        (["gost", "-L=tcp://:8080/10.0.0.5:80"], {"peer": "listen tcp://:8080/10.0.0.5:80"}),
        (
            ["cloudflared", "tunnel", "--url", "http://localhost:8000"],
            {"peer": "publishes http://localhost:8000"},
        ),
        (["cloudflared", "tunnel", "run", "lab"], {"peer": "tunnel run lab"}),
        (["cloudflared", "proxy-dns"], {}),
    ],
)
def test_parsers(argv: list[str], facts: dict[str, str]) -> None:
    got = tunnels.TOOL_PARSERS[argv[0]](argv)
    assert {k: v for k, v in got.items() if v is not None} == facts


def test_tunnel_tool_finding_names_its_peer() -> None:
    """A tool's name alone is tunnel.tool (with what its argv names); a command line shaped
    like the tool is reported once, by the shape's rule, with its peer and reverse."""
    det = ProcessDetector(context())
    argv = ["chisel", "client", "198.51.100.7:8080", "R:2222:localhost:22"]
    p = proc(name="chisel", exe="/usr/local/bin/chisel", cmdline=argv)
    found = {f.rule: f for f in det.handle(ProcExec(time.time(), p))}
    assert "tunnel.tool" not in found
    assert found["tunnel.chisel"].evidence == {
        "peer": "198.51.100.7:8080",
        "reverse": "R:2222:localhost:22",
        "exe": "/usr/local/bin/chisel",
    }
    argv = ["frpc", "tcp", "-s", "198.51.100.7", "-P", "7000", "-l", "22"]  # no remote port
    p = proc(name="frpc", exe="/usr/local/bin/frpc", cmdline=argv)
    (f,) = [f for f in det.handle(ProcExec(time.time(), p)) if f.rule == "tunnel.tool"]
    assert f.evidence == {"tool": "frpc", "peer": "198.51.100.7:7000"}
    plain = proc(name="ngrok", exe="/usr/local/bin/ngrok", cmdline=["ngrok", "version"])
    (f,) = [f for f in det.handle(ProcExec(time.time(), plain)) if f.rule == "tunnel.tool"]
    assert f.evidence == {"tool": "ngrok"}
