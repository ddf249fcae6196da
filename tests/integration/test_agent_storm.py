"""Storm: 5,000 short-lived processes and 20,000 new files within 20 s, a miner in the middle."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun
from fakes import fake_elf_miner, write_burner

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(150),
]

PROCESSES = 5000
FILES = 20000
SPAWNERS = 2
RSS_GROWTH_LIMIT_KB = 100 * 1024  # what the storm may add to the agent's resident memory

FILE_WRITER = """
import os, sys
root = sys.argv[1]
n = int(sys.argv[2])
for d in range(n // 1000):
    os.mkdir(os.path.join(root, f"d{d}"))
for i in range(n):
    with open(os.path.join(root, f"d{i // 1000}", f"f{i}.dat"), "wb") as f:
        f.write(b"x" * 64)
"""


def test_storm_agent_survives_and_still_reports(tmp_path: Path, procs) -> None:
    agent = AgentRun(tmp_path / "agent", interval=1.0)
    agent.start()
    miner_pid = 0
    try:
        base_rss = peak_rss = agent.rss_kb()
        (tmp_path / "bin").mkdir()
        burner = write_burner(tmp_path / "bin" / "xmrig")
        pidfile = tmp_path / "miner.pid"
        per = PROCESSES // SPAWNERS
        # the first spawner starts the miner halfway through its loop
        loop = (
            f"for i in $(seq {per}); do /bin/true; "
            f'if [ "$i" = {per // 2} ] && [ -n "$MINER" ]; then '
            f'"$MINER" --url stratum+tcp://127.0.0.1:9 & echo $! > {pidfile}; fi; '
            "done"
        )
        storm_dir = agent.watch / "storm"
        storm_dir.mkdir()
        start = time.monotonic()
        env = {**os.environ, "BURN_SECONDS": "30"}
        spawners = [
            subprocess.Popen(
                ["bash", "-c", loop], env={**env, "MINER": str(burner) if i == 0 else ""}
            )
            for i in range(SPAWNERS)
        ]
        procs.extend(spawners)
        writer = subprocess.Popen([sys.executable, "-c", FILE_WRITER, str(storm_dir), str(FILES)])
        procs.append(writer)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_rss
            while not done.is_set():
                with contextlib.suppress(OSError, AssertionError):
                    peak_rss = max(peak_rss, agent.rss_kb())
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for p in [*spawners, writer]:
            assert p.wait(60) == 0
        storm_seconds = time.monotonic() - start
        miner_pid = int(pidfile.read_text())
        rec = agent.wait_for(
            lambda r: r["rule"] == "miner.process_name" and r["process"]["pid"] == miner_pid,
            timeout=30,
        )
        assert rec["category"] == "miner"
        # still responsive afterwards: a new drop is reported
        after = fake_elf_miner(agent.watch / "after-storm")
        agent.wait_for(lambda r: bool(r["file"]) and r["file"]["path"] == str(after), timeout=30)
        time.sleep(agent.interval * 2)
        done.set()
        sampler.join(5)
        assert agent.alive()
        print(
            f"storm: {PROCESSES} processes and {FILES} files in {storm_seconds:.1f}s; "
            f"agent RSS {base_rss // 1024} MiB -> peak {peak_rss // 1024} MiB"
        )
        assert peak_rss - base_rss < RSS_GROWTH_LIMIT_KB
    finally:
        if miner_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(miner_pid, signal.SIGKILL)
        assert agent.stop() == 0
