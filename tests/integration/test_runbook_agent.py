"""Runbook spoofing against the real agent: a job is its executable and user, not argv.

A declared `python3 train.py` job (the real interpreter, as root) at full CPU is explained;
`exec -a "python3 train.py"` of a burner with another executable, running the very same
script, is not (load and daemon findings name it); nor is the job's child that runs
another executable. Each runs detached, as a job would, so each is a tree of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from detach import detach

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(60),
]

PYTHON = os.path.realpath(sys.executable)
SUSTAIN, INTERVAL = 4.0, 1.0
CONFIG = f"""
[load]
sample_interval = {INTERVAL}
sustain = {SUSTAIN}
grace = 2.0
cpu_ceiling = 0.15
[[runbook.jobs]]
name = "training"
exe = "{PYTHON}"
user = "root"
cmdline = '.*/train\\.py( .*)?'  # argv can say this too: it only narrows the job
"""
# ~50% of one core for at most 30 s; with --spawn CMD..., first starts CMD as a child
TRAIN = """
import subprocess, sys, time
if "--spawn" in sys.argv:
    subprocess.Popen(sys.argv[sys.argv.index("--spawn") + 1:])
end = time.time() + 30
while time.time() < end:
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass
    time.sleep(0.05)
"""


def named(rec: Record, pid: int) -> bool:
    """Whether a record is about pid, or counts it among its tree's top processes."""
    if rec["process"] and rec["process"]["pid"] == pid:
        return True
    return any(row["pid"] == pid for row in rec["evidence"].get("tree", {}).get("top", []))


def test_a_job_is_its_executable_and_user_not_its_argv(tmp_path: Path, detached) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    train = jobs / "train.py"
    train.write_text(TRAIN)
    other = tmp_path / "bin" / "python3"  # the same interpreter, at another path
    other.parent.mkdir()
    shutil.copy(PYTHON, other)
    other.chmod(0o755)
    agent = AgentRun(tmp_path / "agent", extra=CONFIG)
    agent.start()
    try:
        job = detach([PYTHON, str(train)])
        detached.append(job)
        spoof = detach(["bash", "-c", f'exec -a "python3 train.py" {other} {train}'])
        detached.append(spoof)
        parent = detach([PYTHON, str(train), "--spawn", str(other), str(train)])
        detached.append(parent)
        deadline = time.monotonic() + 10
        while not (kids := Path(f"/proc/{parent}/task/{parent}/children").read_text().split()):
            assert time.monotonic() < deadline, "the job's child did not start"
            time.sleep(0.05)
        child = int(kids[0])
        detached.append(child)
        timeout = SUSTAIN + 20
        agent.wait_for(lambda r: r["rule"] == "load.cpu" and named(r, spoof), timeout)
        agent.wait_for(lambda r: r["rule"] == "load.cpu" and named(r, child), timeout)
        agent.wait_for(lambda r: r["rule"] == "daemon.new_detached" and named(r, spoof), timeout)
        time.sleep(2 * INTERVAL)
        about_jobs = [
            (r["rule"], r["summary"])
            for r in agent.records()
            if r["category"] in ("load", "daemon") and (named(r, job) or named(r, parent))
        ]
        assert about_jobs == []
        assert all(Path(f"/proc/{p}").exists() for p in (job, parent))  # they ran all along
    finally:
        agent.stop()
