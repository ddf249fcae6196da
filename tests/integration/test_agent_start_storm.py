"""Storm at start: 20,000 processes already running when the agent starts (more than its
event queue holds), a miner among them: reported within two sweeps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun
from attack import PYTHON, memory_high_kb
from fakes import BURNER

from sentinel.collectors.procs import RECONCILE

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(240),
]

PROCESSES = 20000
QUEUE = 8192
SPAWNER = """
import os, sys, time
n, miner = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    os.posix_spawn("/bin/sleep", ["sleep", "300"], os.environ)
    if i == n // 2:
        pid = os.posix_spawn(miner, [miner, "--donate-level", "1"], os.environ)
print(pid, flush=True)
time.sleep(300)
"""


def test_twenty_thousand_processes_at_start_miner_within_two_sweeps(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    if limit - len(os.listdir("/proc")) < PROCESSES + 5000:
        pytest.skip(f"pid_max {limit} leaves no room for {PROCESSES} more processes")
    burner = tmp_path / "xmrig"
    burner.write_text(BURNER.format(python=PYTHON))
    burner.chmod(0o755)
    spawner = subprocess.Popen(
        [PYTHON, "-c", SPAWNER, str(PROCESSES), str(burner)],
        stdout=subprocess.PIPE,
        env={**os.environ, "BURN_SECONDS": "200"},
        start_new_session=True,
    )
    agent = AgentRun(tmp_path / "agent", interval=1.0, agent=f"queue_size = {QUEUE}")
    try:
        assert spawner.stdout is not None
        miner = int(spawner.stdout.readline())
        started = time.monotonic()
        agent.start(timeout=120)
        ready_after = time.monotonic() - started
        sweep = agent.interval * RECONCILE  # the reconciling sweep, netlink being on
        rec = agent.wait_for(
            lambda r: r["category"] == "miner" and (r["process"] or {}).get("pid") == miner,
            timeout=2 * sweep,
        )
        found = time.monotonic() - started
        rss = agent.rss_kb()
        print(
            f"start storm: {PROCESSES} processes; agent ready after {ready_after:.1f}s, "
            f"miner ({rec['rule']}) {found:.1f}s after start; RSS {rss // 1024} MiB"
        )
        assert rss < memory_high_kb()
        assert agent.alive()
    finally:
        stopping = time.monotonic()
        code = agent.stop()
        stopped_in = time.monotonic() - stopping
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spawner.pid, signal.SIGKILL)
        spawner.wait(30)
    print(f"start storm: agent stopped in {stopped_in:.1f}s")
    assert code == 0, "".join(agent.stderr[-20:])
