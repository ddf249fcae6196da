"""A CPU burner whose argv is clean but whose environment names a pool and a wallet: the
real agent's load finding names them (never the rest of the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from fakes import fake_monero_address

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

SUSTAIN, INTERVAL = 6.0, 1.0
CONFIG = f"""
[load]
sample_interval = {INTERVAL}
sustain = {SUSTAIN}
grace = 2.0
cpu_ceiling = 0.15  # the box is shared: a starved ~50% burner still clears it
"""
# ~50% of one core for at most 40 s; it reads nothing of its environment
BURNER = """
import time
end = time.time() + 40
while time.time() < end:
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass
    time.sleep(0.05)
"""


def test_load_finding_names_the_pool_and_wallet_of_the_environment(tmp_path: Path, procs) -> None:
    agent = AgentRun(tmp_path / "agent", extra=CONFIG)
    agent.start()
    try:
        script = tmp_path / f"job-{os.getpid()}.py"
        script.write_text(BURNER)
        wallet = fake_monero_address()
        secret = "tok-" + os.urandom(6).hex()
        env = {
            "PATH": os.environ["PATH"],
            "POOL": "stratum+tcp://pool.minepool.test:3333",
            "WALLET": wallet,
            "GITHUB_TOKEN": secret,
        }
        p = subprocess.Popen(["nice", "-n", "-5", sys.executable, str(script)], env=env)
        procs.append(p)

        def about(rec: Record) -> bool:
            return rec["rule"] == "load.cpu" and (rec["process"] or {}).get("pid") == p.pid

        rec = agent.wait_for(about, timeout=SUSTAIN + 15)
        hidden = rec["evidence"]["hidden"]["environ"]
        assert hidden["urls"] == ["stratum+tcp://pool.minepool.test:3333"]
        assert hidden["wallets"] == [{"kind": "monero", "address": wallet}]
        assert sorted(hidden["variables"]) == ["POOL", "WALLET"]
        assert "stratum+tcp://pool.minepool.test:3333" in rec["summary"]
        assert secret not in json.dumps(agent.records())
    finally:
        assert agent.stop() == 0, "".join(agent.stderr[-40:])
