"""Attack 8, a restart is an amnesty: uid 65534 changes things while the agent is down
(killed, as the watchdog or the OOM killer would); the restarted agent says it was gone and
for how long, reports the cron line added meanwhile and the daemon started meanwhile, and
still reports a miner in time."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun
from attacker import (
    NOBODY,
    SYSTEM_PYTHON,
    Guard,
    Nobody,
    guarded_agent,
    nobody_home,
    then_miner_reported,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors and setuid need root"),
    pytest.mark.timeout(120),
]

nobody = pytest.fixture(nobody_home)

DAEMON = """
import os, sys, time
if os.fork(): os._exit(0)
os.setsid()
if os.fork(): os._exit(0)
while os.getppid() != 1: time.sleep(0.01)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(60)
"""


def seed_then_kill(agent: AgentRun, guard: Guard, cron: Path) -> None:
    """A cron file of nobody's, seen and saved in the agent's snapshots; then SIGKILL."""
    cron.write_text("# nobody's jobs\n")
    os.chown(cron, 65534, 65534)
    agent.wait_for(lambda r: (r["file"] or {}).get("path") == str(cron), timeout=10)
    saved = agent.state / "files.state"
    deadline = time.monotonic() + 15
    while not saved.exists() or str(cron) not in saved.read_text():
        assert time.monotonic() < deadline, "the agent never saved its snapshots"
        time.sleep(0.2)
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait(10)
    guard.stop()


def test_changes_while_down_are_reported_after_restart(nobody: Nobody, procs: list) -> None:
    agent, guard = guarded_agent(nobody)
    cron = agent.etc / "cron.d" / "nobody"
    pidfile = nobody.home / "daemon.pid"
    daemon = 0
    try:
        seed_then_kill(agent, guard, cron)
        # while the agent is down
        nobody.run(
            "import sys; open(sys.argv[1], 'a').write('* * * * * /tmp/.x/kdevtmpfsi\\n')", str(cron)
        )
        # its own script name: no other detached python daemon folds it into its incident
        script = nobody.base / f"syncd-{secrets.token_hex(4)}.py"
        script.write_text(DAEMON)
        subprocess.run(
            [SYSTEM_PYTHON, str(script), str(pidfile)],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            env=nobody.env(),
            stdin=subprocess.DEVNULL,
            timeout=10,
            check=True,
        )
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.02)
        daemon = int(pidfile.read_text())
        time.sleep(1.0)
        guard = Guard(nobody.base, "notify2.sock")
        guard.start(agent)
        back = agent.wait_for(lambda r: r["rule"] == "integrity.agent_restarted", timeout=10)
        assert back["severity"] == "medium" and back["evidence"]["clean_stop"] is False
        assert back["evidence"]["down_seconds"] >= 1.0
        line = agent.wait_for(
            lambda r: (
                r["rule"] == "persistence.cron"
                and r["file"]["path"] == str(cron)
                and "* * * * * /tmp/.x/kdevtmpfsi" in r["evidence"]["added"]
            ),
            timeout=10,
        )
        assert line["severity"] in ("medium", "high", "critical")
        agent.wait_for(
            lambda r: (
                r["rule"] == "daemon.new_detached" and (r["process"] or {}).get("pid") == daemon
            ),
            timeout=agent.min_age + 10,
        )
        print(
            f"attack 8: agent gone {back['evidence']['down_seconds']}s; cron line, daemon reported"
        )
        then_miner_reported(agent, guard, nobody, procs)
        for name in ("heartbeat", "files.state", "daemons.state"):
            assert stat.S_IMODE(os.stat(agent.state / name).st_mode) == 0o600, name
        json.loads((agent.state / "heartbeat").read_text())
    finally:
        if daemon:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGKILL)
        guard.stop()
        agent.stop()


REWRITE_KEEP_MTIME = """
import os, sys
path, line = sys.argv[1], sys.argv[2].encode() + b"\\n"
st = os.stat(path)
assert len(line) == st.st_size
with open(path, "r+b") as f:  # in place: the same inode and size
    f.write(line)
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime back
"""


def test_same_size_rewrite_with_old_mtime_while_down_is_reported(
    nobody: Nobody, procs: list
) -> None:
    """The restart diff keys a file on its ctime too: inode, size and mtime are the user's
    to keep (an in-place write, then utime) but the ctime is not."""
    agent, guard = guarded_agent(nobody)
    cron = agent.etc / "cron.d" / "nobody2"
    try:
        seed_then_kill(agent, guard, cron)
        nobody.run(REWRITE_KEEP_MTIME, str(cron), "@reboot /tmp/.x")
        guard = Guard(nobody.base, "notify2.sock")
        guard.start(agent)
        agent.wait_for(lambda r: r["rule"] == "integrity.agent_restarted", timeout=10)
        agent.wait_for(
            lambda r: (
                r["rule"] == "persistence.cron"
                and r["file"]["path"] == str(cron)
                and "@reboot /tmp/.x" in r["evidence"]["added"]
            ),
            timeout=10,
        )
        deadline = time.monotonic() + 15  # the new guard's own samples and pings first
        while not guard.rss or len(guard.pings) < 2:
            assert time.monotonic() < deadline, "the restarted agent never pinged its watchdog"
            time.sleep(0.2)
        then_miner_reported(agent, guard, nobody, procs)
    finally:
        guard.stop()
        agent.stop()
