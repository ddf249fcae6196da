"""Tunnels and reverse shells against the real agent: files dropped into a watched place
(YARA and the text rules line by line), a reverse tunnel in a systemd unit, and a
chisel-shaped command line run by a binary that is not called chisel."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tunnel_files
from agent_harness import AgentRun, Record

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

PYTHON = os.path.realpath(sys.executable)
SAMPLES = {s.name: s for s in tunnel_files.ALL}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRun]:
    run = AgentRun(tmp_path_factory.mktemp(f"agent-tunnels-{os.getpid()}"))
    run.start()
    yield run
    assert run.stop() == 0, "agent did not stop cleanly:\n" + "".join(run.stderr[-40:])


def about_file(path: Path, rule: str):
    def pred(rec: Record) -> bool:
        return rec["rule"] == rule and (rec["file"] or {}).get("path") == str(path)

    return pred


@pytest.mark.parametrize(
    ("sample", "dropped_as", "rule"),
    [
        ("rs/py_pty.py", "update.py", "yara.revshell_python"),
        ("rs/mkfifo_nc.sh", "x.sh", "tunnel.reverse_shell"),
        ("ssh/autossh.sh", "keepalive.sh", "tunnel.ssh_reverse"),
        ("tools/renamed_chisel.sh", "start.sh", "tunnel.chisel"),
        ("cfg/cloudflared/config.yml", "config.yml", "yara.tunnel_cloudflared_config"),
        ("cfg/gost.json", "gost.json", "yara.tunnel_gost_config"),
    ],
)
def test_dropped_file_is_reported(agent: AgentRun, sample: str, dropped_as: str, rule: str) -> None:
    path = agent.watch / f"{os.getpid()}-{dropped_as}"
    path.write_text(SAMPLES[sample].text)
    rec = agent.wait_for(about_file(path, rule), timeout=20)
    assert rec["severity"] in ("medium", "high", "critical") and rec["category"] == "tunnel"
    if rec["detector"] == "filetext":
        assert rec["evidence"]["line"] >= 1 and rec["evidence"]["excerpt"]


def test_benign_notebook_forward_dropped_is_not_reported(agent: AgentRun) -> None:
    quiet = agent.watch / f"{os.getpid()}-notebook.sh"
    quiet.write_text(SAMPLES["ok/notebook.sh"].text)
    marker = agent.watch / f"{os.getpid()}-after.sh"  # dropped after: judged after it
    marker.write_text(SAMPLES["rs/sh_udp.sh"].text)
    agent.wait_for(about_file(marker, "tunnel.reverse_shell"), timeout=20)
    about_quiet = [r for r in agent.records() if (r["file"] or {}).get("path") == str(quiet)]
    assert [r for r in about_quiet if r["severity"] not in ("info", "low")] == []


def test_reverse_tunnel_in_a_unit_is_a_strong_indicator(agent: AgentRun) -> None:
    unit = agent.etc / "systemd" / "system" / f"net-helper-{os.getpid()}.service"
    unit.write_text(SAMPLES["ssh/backdoor.service"].text)

    def pred(rec: Record) -> bool:
        return rec["category"] == "persistence" and (rec["file"] or {}).get("path") == str(unit)

    rec = agent.wait_for(pred, timeout=20)
    indicators = rec["evidence"]["indicators"]
    assert any("ssh reverse tunnel -R 2222:localhost:22" in i for i in indicators)
    assert rec["severity"] in ("high", "critical")


def test_renamed_binary_with_chisel_shaped_argv(agent: AgentRun, tmp_path: Path, procs) -> None:
    """A python (not called chisel) whose argv is `client HOST:PORT R:...`: the script it
    runs is named `client`, so the command line is exactly chisel's."""
    (tmp_path / "client").write_text("import time\ntime.sleep(30)\n")
    argv = [PYTHON, "client", "198.51.100.7:8080", "R:2222:localhost:22"]
    p = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL)
    procs.append(p)

    def pred(rec: Record) -> bool:
        return rec["rule"] == "tunnel.chisel" and (rec["process"] or {}).get("pid") == p.pid

    rec = agent.wait_for(pred, timeout=20)
    assert rec["severity"] == "high"
    assert rec["evidence"]["peer"] == "198.51.100.7:8080"
    assert rec["evidence"]["reverse"] == "R:2222:localhost:22"
