"""Attack 12: a file name carrying a newline, a fake log line and ESC sequences is printed
escaped by the stdout sink (the journal) and by `sentinel scan`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from agent_harness import AgentRun
from attack import Siege, world_dir
from fakes import fake_elf_miner

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

FORGED = "drop\n2026-01-01T00:00:00.000Z CRITICAL miner all clear\r\x1b[2J\u2028x"


def stdout_lines(agent: AgentRun, wanted: str, timeout: float = 10.0) -> list[str]:
    """The agent's stdout lines once one holds `wanted`: the JSONL sink may write its record
    a moment before the stdout sink writes the same finding."""
    deadline = time.monotonic() + timeout
    while True:
        lines = agent.out.read_text().splitlines()
        if any(wanted in line for line in lines):
            return lines
        assert time.monotonic() < deadline, f"no stdout line holds {wanted!r}: {lines[-5:]}"
        time.sleep(0.05)


def test_forged_file_name_cannot_forge_journal_or_scan_lines() -> None:
    root = world_dir("attack12")
    try:
        agent = AgentRun(root / "agent", stdout=True)
        with Siege(agent) as siege:
            agent.watch.chmod(0o1777)
            elf = fake_elf_miner(siege.bin / "elf").read_bytes()
            target = str(agent.watch / FORGED)
            siege.python(f"import sys; open({target!r}, 'wb').write(sys.stdin.buffer.read())", elf)
            agent.wait_for(lambda r: (r["file"] or {}).get("path") == str(agent.watch / FORGED))
            lines = stdout_lines(agent, "drop\\n2026-01-01T00:00:00.000Z CRITICAL")
            assert lines and all(line.startswith("20") and " " in line for line in lines)
            assert not any("\x1b" in line or "\u2028" in line for line in lines)
            assert siege.miner_latency() < 10
        # the same name through `sentinel scan`, on a pipe and on a (forced) terminal
        scan_dir = root / "scan"
        scan_dir.mkdir()
        fake_elf_miner(scan_dir / FORGED)
        for env in ({}, {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "300"}):
            out = subprocess.run(
                [sys.executable, "-m", "sentinel.cli", "scan", "--no-cache", str(scan_dir)],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **env},
            )
            assert out.returncode == 1, out.stderr
            assert "\x1b[2J" not in out.stdout and "\u2028" not in out.stdout
            assert not any(line.startswith("2026-01-01") for line in out.stdout.splitlines())
            assert "\\x1b[2J" in out.stdout.replace("\n", "")
    finally:
        shutil.rmtree(root, ignore_errors=True)
