"""Attacks on scanning, run as uid 65534: against the real agent (its drop scans) and
against `sentinel scan`; after each one a miner-like process is still reported in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from attacker import Nobody, guarded_agent, nobody_home, then_miner_reported
from fakes import fake_elf_miner

from sentinel.cli.codes import EX_FINDINGS

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors and setuid need root"),
    pytest.mark.timeout(120),
]

nobody = pytest.fixture(nobody_home)

PAD = b"grep " * (1024 * 1024 // 5)  # regex-heavy for the dropper rules: seconds per MB
DROP_PADDED = """
import sys
miner = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as f:
    f.write(miner[:64] + sys.stdin.buffer.read() + miner[64:])
"""


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_yara_timeout_is_a_finding_in_agent_and_scan(nobody: Nobody, procs: list) -> None:
    """Attack 6: a miner padded with regex-heavy junk so the rules time out (1 s here)."""
    agent, guard = guarded_agent(nobody, extra="[scan]\ntimeout = 1\n")
    try:
        miner = fake_elf_miner(nobody.base / "miner")
        padded = agent.watch / "kdevtmpfsi"
        done = subprocess.run(
            ["/usr/bin/python3", "-c", DROP_PADDED, str(miner), str(padded)],
            input=PAD,
            user=65534,
            group=65534,
            extra_groups=[],
            env=nobody.env(),
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        rec = agent.wait_for(
            lambda r: (
                r["rule"] == "integrity.scan_timeout"
                and (r["file"] or {}).get("path") == str(padded)
            ),
            timeout=20,
        )
        assert rec["severity"] in ("medium", "high", "critical") and rec["file"]["sha256"]
        cfg = str(agent.root / "sentinel.toml")
        run = scan("-c", cfg, "--json", "--no-cache", str(agent.watch))
        doc = json.loads(run.stdout)
        timeouts = [f for f in doc["findings"] if f["rule"] == "integrity.scan_timeout"]
        print(f"attack 6: sentinel scan exit {run.returncode}, {len(timeouts)} timeout finding")
        assert run.returncode == EX_FINDINGS, run.stderr
        assert [f["file"]["path"] for f in timeouts] == [str(padded)]
        text = scan("-c", cfg, "--no-cache", str(agent.watch))
        assert text.returncode == EX_FINDINGS and "kdevtmpfsi" in text.stdout
        then_miner_reported(agent, guard, nobody, procs)
    finally:
        guard.stop()
        agent.stop()
