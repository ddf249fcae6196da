"""The procs collector after exec, on real processes: a main thread that exits while
another runs is not the process's exit (no ProcExit, CPU still sampled, the end seen when
the last thread goes), and a binary deleted after the start is reported again."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from collector_run import Running

from sentinel.collectors.procs import ProcsCollector
from sentinel.core import config
from sentinel.core.events import ProcCpu, ProcExec, ProcExit

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the process connector needs root"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the C stand-in"),
    pytest.mark.timeout(60),
]

SOURCE = Path(__file__).resolve().parent.parent / "support" / "data" / "threads.c"
CFG = "[agent]\ninterval = 0.5\n[load]\nsample_interval = 0.5\n"


@pytest.fixture
def prog(tmp_path: Path) -> Path:
    out = tmp_path / f"leader-{os.getpid()}-{secrets.token_hex(2)}"
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(out), str(SOURCE)], check=True)
    return out


async def test_leader_exit_is_not_the_process_exit(prog: Path, procs) -> None:
    async with Running(ProcsCollector, config.parse(CFG)) as run:
        p = subprocess.Popen([str(prog), "leader", "30", "0.5"])
        procs.append(p)
        first = await run.wait(ProcExec, lambda e: e.proc.pid == p.pid, timeout=10)
        assert not first.proc.leader_exited
        marked = await run.wait(
            ProcExec, lambda e: e.proc.pid == p.pid and e.proc.leader_exited, timeout=10
        )
        assert marked.source == "leader" and marked.proc.exe == str(prog)
        await asyncio.sleep(4)  # several sweeps and CPU samples after the leader left
        assert not run.of(ProcExit, lambda e: e.pid == p.pid)
        after = [e for e in run.of(ProcCpu) if e.time > marked.time and p.pid in e.cpu]
        assert sum(e.cpu[p.pid] for e in after) > 0  # its thread's CPU, still counted
        p.kill()
        p.wait()
        gone = await run.wait(ProcExit, lambda e: e.pid == p.pid, timeout=10)
        assert gone.start_time == first.proc.start_time


async def test_binary_deleted_after_start_is_judged_again(tmp_path: Path, procs) -> None:
    copy = tmp_path / f"sl-{secrets.token_hex(3)}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", copy)
    async with Running(ProcsCollector, config.parse(CFG)) as run:
        p = subprocess.Popen([str(copy), "30"])
        procs.append(p)
        first = await run.wait(ProcExec, lambda e: e.proc.pid == p.pid, timeout=10)
        assert not first.proc.exe_deleted
        copy.unlink()
        again = await run.wait(
            ProcExec, lambda e: e.proc.pid == p.pid and e.proc.exe_deleted, timeout=10
        )
        assert again.source == "deleted" and not again.proc.exe_replaced
        assert again.proc.exe == str(copy)
