"""Two false positives of a plain box, against the real agent: a subreaper that reaps a
child which burned CPU before (its history) draws no load.cpu; the agent itself, detached
as a service manager runs it and restarted, draws no daemon finding, while a burner that
merely calls itself `sentinel` still does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from detach import detach, launcher
from fakes import write_burner

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(60),
]

INTERVAL = 1.0
# one sample over the ceiling fires (sustain <= the sample interval): a spike is enough
SPIKY = f"[load]\nsample_interval = {INTERVAL}\nsustain = {INTERVAL}\ngrace = 0.5\n"
REAPER = """
import ctypes, os, sys, time
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
burn, out = float(sys.argv[1]), sys.argv[2]
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        end = time.process_time() + burn
        while time.process_time() < end:
            pass
        os.write(w, b"%d" % os.getpid())
        time.sleep(60)
        os._exit(0)
    os._exit(0)  # orphans the burner: it is re-parented to this subreaper
os.wait()
pid = int(os.read(r, 64))
with open(out + ".tmp", "w") as f:
    f.write(str(pid))
os.rename(out + ".tmp", out)
os.wait()  # reaps the burner once the test kills it: its CPU lands in our cutime
time.sleep(30)
"""


def names(rec: Record, pids: set[int]) -> bool:
    proc = rec["process"]
    if proc and proc["pid"] in pids:
        return True
    return any(row["pid"] in pids for row in rec["evidence"].get("tree", {}).get("top", []))


def test_a_subreaper_reaping_a_burner_draws_no_load(tmp_path: Path, detached) -> None:
    out = tmp_path / "burner.pid"
    reaper = detach([sys.executable, "-c", REAPER, "3", str(out)])
    detached.append(reaper)
    deadline = time.monotonic() + 30
    while not out.exists():
        assert time.monotonic() < deadline, "the burner did not burn its 3 s"
        time.sleep(0.05)
    burner = int(out.read_text())
    detached.append(burner)
    agent = AgentRun(tmp_path / "agent", extra=SPIKY)
    agent.start()
    try:
        time.sleep(3 * INTERVAL)  # the burner's 3 s are read: history from before the agent
        os.kill(burner, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{burner}").exists():
            assert time.monotonic() < deadline, "the subreaper did not reap the burner"
            time.sleep(0.05)
        time.sleep(4 * INTERVAL)
        loud = [r["summary"] for r in agent.records() if names(r, {reaper, burner})]
        assert loud == []
    finally:
        agent.stop()


class DetachedAgent(AgentRun):
    """The agent as a service manager runs it: its parent is gone (re-parented to pid 1)."""

    pid = 0

    def start(self, timeout: float = 30.0, env: dict[str, str] | None = None) -> None:
        cfg = self.prepare()
        self._ready.clear()
        argv = [sys.executable, "-m", "sentinel.cli", "agent", "-c", str(cfg)]
        self.proc = subprocess.Popen(  # the agent keeps the launcher's stderr: our pipe
            [sys.executable, "-c", launcher(keep_stderr=True), "{}", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline())
        self.proc.wait(10)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("agent not ready in time:\n" + "".join(self.stderr[-40:]))

    def alive(self) -> bool:
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    def stop(self) -> int | None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)
        return 0


def test_the_agent_is_not_a_new_daemon_but_a_burner_named_sentinel_is(
    tmp_path: Path, detached
) -> None:
    first = AgentRun(tmp_path / "agent")  # a first run: what it saw is the restart's past
    first.start()
    assert first.stop() == 0
    agent = DetachedAgent(tmp_path / "agent")
    agent.start()
    try:
        assert Path(f"/proc/{agent.pid}/stat").read_text().split()[3] == "1"  # detached
        (tmp_path / "bin").mkdir()
        fake = write_burner(tmp_path / "bin" / "sentinel")
        burner = detach([str(fake)], {"BURN_SECONDS": "15"})
        detached.append(burner)
        agent.wait_for(
            lambda r: r["rule"] == "daemon.new_detached" and names(r, {burner}), timeout=20
        )
        time.sleep(1.0)
        own = [r["summary"] for r in agent.records() if names(r, {agent.pid})]
        assert own == []
    finally:
        agent.stop()
