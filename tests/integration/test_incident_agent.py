"""Incident folding against the real agent and a real webhook receiver: a decoy alert on a
long-lived wrapper folds nothing its miner child does with another executable (the child's
high finding is logged and delivered), and what it does fold is still in the log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from receiver import Receiver, ThreadedReceiver

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(60),
]

PYTHON = os.path.realpath(sys.executable)
RULE = "miner.process_name"


def copy(src: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    dest.chmod(0o755)
    return dest


def exe(rec: Record) -> str:
    return rec["process"]["exe"] if rec["process"] else ""


def delivered(rx: Receiver) -> list[Record]:
    return [r.json() for r in list(rx.requests)]


def test_a_decoy_wrapper_does_not_silence_its_miner_child(tmp_path: Path, procs) -> None:
    wrapper = copy("/bin/bash", tmp_path / "decoy" / "xmrig")  # a shell named like a miner
    miner = copy(PYTHON, tmp_path / "miner" / "xmrig")  # another executable, same name
    go = tmp_path / "go"
    script = (
        f"while [ ! -e {go} ]; do sleep 0.05; done; "
        f"{wrapper} -c 'sleep 20; exit 0' & "  # a worker of the wrapper's own program
        f"{miner} -c 'import time; time.sleep(20)'; exit 0"
    )
    with ThreadedReceiver() as rx:
        sink = f'[[sinks]]\ntype = "webhook"\nname = "hook"\nurl = "{rx.url()}"\n'
        agent = AgentRun(tmp_path / "agent", extra=sink)
        agent.start()
        try:
            shell = subprocess.Popen([str(wrapper), "-c", script])
            procs.append(shell)

            decoy = agent.wait_for(lambda r: r["rule"] == RULE and r["process"]["pid"] == shell.pid)
            go.touch()
            child = agent.wait_for(lambda r: r["rule"] == RULE and exe(r) == str(miner))
            worker = agent.wait_for(
                lambda r: r["rule"] == RULE and exe(r) == str(wrapper) and r != decoy
            )
            assert child["severity"] == "high" and "folded_into" not in child["evidence"]
            assert worker["evidence"]["folded_into"]["incident"] == decoy["id"]
            deadline = time.monotonic() + 15
            while child["id"] not in {r.get("id") for r in delivered(rx)}:
                assert time.monotonic() < deadline, [r.get("rule") for r in delivered(rx)]
                time.sleep(0.1)
            time.sleep(1.0)  # the folded one would have been queued with the child
            ids = {r.get("id") for r in delivered(rx)}
            assert decoy["id"] in ids and worker["id"] not in ids
        finally:
            agent.stop()
