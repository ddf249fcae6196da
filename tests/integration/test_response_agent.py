"""The real agent with `[response] mode = "enforce"`: a miner in scope is frozen and killed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun
from fakes import write_burner

from sentinel.response import forensics
from sentinel.response.freeze import cgroup_mounts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_agent_freezes_and_kills_a_miner_in_scope(tmp_path: Path) -> None:
    cg = Path(cgroup_mounts()["v2"]) / f"sentinel-agent-{os.getpid()}"
    work = Path("/tmp") / f"sentinel-resp-agent-{os.getpid()}"
    cg.mkdir()
    work.mkdir(mode=0o755)
    extra = f"""
[response]
mode = "enforce"
scope = "cgroup:/{cg.name}"
[[response.rules]]
category = "miner"
min_severity = "high"
actions = ["freeze", "forensics", "kill", "quarantine"]
"""
    agent = AgentRun(tmp_path, extra=extra)
    burner = write_burner(work / "xmrig")
    p = None
    try:
        agent.start()
        enter = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" "$@"']
        p = subprocess.Popen(
            [*enter, str(burner), "--donate-level", "1"],
            env={"PATH": "/usr/bin:/bin", "BURN_SECONDS": "20"},
            start_new_session=True,
        )

        def done(action: str):
            return lambda r: r["rule"] == f"response.{action}" and p.pid in r["evidence"]["pids"]

        frozen = agent.wait_for(done("freeze"), timeout=20)
        assert frozen["evidence"]["result"] == "done", frozen
        assert frozen["evidence"]["method"] == f"cgroup v2:/{cg.name}"
        assert frozen["category"] == "integrity" and frozen["severity"] in ("high", "critical")
        killed = agent.wait_for(done("kill"), timeout=20)
        assert killed["evidence"]["result"] == "done", killed
        assert p.wait(10) == -signal.SIGKILL
        snap = agent.wait_for(done("forensics"), timeout=20)
        bundle = Path(snap["evidence"]["path"])
        # the bundle holds the tree's timeline, listed in the MANIFEST and intact
        assert "timeline.json" in (bundle / "MANIFEST").read_text()
        assert forensics.verify(str(bundle)) == []
        rows = json.loads((bundle / "timeline.json").read_text())
        execs = [r for r in rows if r["kind"] == "exec" and r["pid"] == p.pid]
        assert any(str(burner) in r["argv"] for r in execs), rows
        assert any(r["kind"] == "finding" and r["pid"] == p.pid for r in rows), rows
        q = agent.wait_for(
            lambda r: r["rule"] == "response.quarantine" and r["evidence"]["result"] == "done",
            timeout=20,
        )
        assert q["evidence"]["files"][0]["path"] == str(burner) and not burner.exists()
        assert agent.alive()
    finally:
        agent.stop()
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        with contextlib.suppress(OSError):
            (cg / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 10
        while (cg / "cgroup.procs").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        cg.rmdir()
        shutil.rmtree(work, ignore_errors=True)
