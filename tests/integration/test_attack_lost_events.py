"""Attack 9: lost events. As nobody, bursts of short processes overflow a small engine
queue with a miner hidden in the middle. Dropped events are an integrity finding, the
miner whose exec event was dropped is still reported (a pid is known only once its event
was queued), and a reused pid whose exit was lost is read again."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time

import pytest
from agent_harness import AgentRun
from attack import PYTHON, Siege, world_dir
from collector_run import Running
from fakes import BURNER

from sentinel.collectors.procs import ProcsCollector
from sentinel.core import config
from sentinel.core.events import ProcExec, ProcExit

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(120),
]

BURST = 3000
SPAWNER = """
import os, sys
n, miner, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
kids = []
for i in range(n):
    kids.append(os.posix_spawn("/bin/true", ["true"], os.environ))
    if i == n // 2:
        pid = os.posix_spawn(miner, [miner, "--donate-level", "1"], os.environ)
        open(pidfile, "w").write(str(pid))
    if len(kids) >= 200:
        for k in kids:
            os.waitpid(k, 0)
        kids = []
for k in kids:
    os.waitpid(k, 0)
"""


def test_dropped_events_are_loud_and_the_hidden_miner_is_still_found() -> None:
    root = world_dir("attack9")
    try:
        agent = AgentRun(root / "agent", agent="queue_size = 4")
        with Siege(agent) as siege:
            burner = siege.bin / "hidden" / "xmrig"
            burner.parent.mkdir(mode=0o755)
            burner.write_text(BURNER.format(python=PYTHON))
            burner.chmod(0o755)
            pidfile = siege.bin / "hidden" / "pid"
            siege.bin.joinpath("hidden").chmod(0o777)
            drops = [r for r in agent.records() if r["rule"] == "integrity.events_dropped"]
            before = max((r["evidence"]["dropped_total"] for r in drops), default=0)
            spawner = siege.nobody(
                [PYTHON, "-c", SPAWNER, str(BURST), str(burner), str(pidfile)],
                env={"BURN_SECONDS": "30"},
            )
            assert spawner.wait(60) == 0
            ended = time.monotonic()
            miner_pid = int(pidfile.read_text())
            try:
                agent.wait_for(
                    lambda r: (
                        r["category"] == "miner" and (r["process"] or {}).get("pid") == miner_pid
                    ),
                    timeout=15,
                )
                found = time.monotonic() - ended
                drop = agent.wait_for(
                    lambda r: (
                        r["rule"] == "integrity.events_dropped"
                        and r["evidence"]["dropped_total"] > before  # dropped by the burst
                    ),
                    timeout=15,  # drop findings are at most one per 10 s
                )
                assert drop["severity"] == "medium"
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(miner_pid, signal.SIGKILL)
            print(f"attack 9: {drop['summary']}; hidden miner found {found:.1f}s after the burst")
            assert siege.miner_latency() < 10
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_reused_pid_with_a_lost_exit_is_read_again(procs) -> None:
    async with Running(ProcsCollector, config.parse("[agent]\ninterval = 0.2\n")) as run:
        child = subprocess.Popen(["sleep", "30"])
        procs.append(child)
        ev = await run.wait(ProcExec, lambda e: e.proc.pid == child.pid)
        # as if an older process had this pid and its exit event was lost
        stale = dataclasses.replace(ev.proc, start_time=ev.proc.start_time - 100)
        run.collector.known[child.pid] = stale
        run.collector.lost = True
        run.collector.wake.set()
        gone = await run.wait(ProcExit, lambda e: e.pid == child.pid)
        again = await run.wait(ProcExec, lambda e: e.proc.pid == child.pid and e is not ev)
        assert gone.start_time == stale.start_time
        assert again.proc.start_time == ev.proc.start_time
