"""Attacks as the watched agent would run them: uid 65534, against the real agent.

`Siege` wraps one `AgentRun` for an attack test: it samples the agent's RSS throughout,
starts the attacker's processes as nobody (ended by pid at the end), and `miner_latency`
proves the agent still sees: a miner-like burner started as nobody must be reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent_harness import AgentRun
from fakes import BURNER

NOBODY = 65534
PYTHON = "/usr/bin/python3"  # the system interpreter: nobody cannot enter /root or the venv
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "sentinel.service"


def memory_high_kb() -> int:
    """The unit's MemoryHigh in KiB."""
    m = re.search(r"^MemoryHigh=(\d+)([KMG])$", UNIT.read_text(), re.M)
    assert m, "MemoryHigh missing from the unit"
    return int(m.group(1)) * {"K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2)]


def world_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that nobody can enter (0755), named with our pid."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir="/tmp"))
    path.chmod(0o755)
    return path


class Siege:
    """One attack on one running agent: RSS watched, attacker processes ended by pid."""

    def __init__(self, agent: AgentRun) -> None:
        self.agent = agent
        self.pid = 0
        self.peak_kb = 0
        self.miners = 0
        self.attackers: list[subprocess.Popen[bytes]] = []
        self.bin = world_dir("siege-bin")
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Siege:
        self.agent.start()
        assert self.agent.proc is not None
        self.pid = self.agent.proc.pid
        self.peak_kb = self.agent.rss_kb()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join(5)
        for p in self.attackers:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        try:
            if exc[0] is None:
                assert self.agent.proc is not None and self.agent.proc.pid == self.pid
                assert self.agent.alive(), "agent died:\n" + "".join(self.agent.stderr[-40:])
                assert self.peak_kb < memory_high_kb(), f"agent RSS peaked at {self.peak_kb} KiB"
        finally:
            code = self.agent.stop()
            shutil.rmtree(self.bin, ignore_errors=True)
        if exc[0] is None:
            assert code == 0, "".join(self.agent.stderr[-40:])

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            with contextlib.suppress(OSError, AssertionError):
                self.peak_kb = max(self.peak_kb, self.agent.rss_kb())

    def nobody(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start an attacker process as uid/gid 65534 in its own process group."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        p = subprocess.Popen(
            argv, user=NOBODY, group=NOBODY, extra_groups=[], start_new_session=True, **kw
        )
        self.attackers.append(p)
        return p

    def python(self, code: str, stdin: bytes = b"", timeout: float = 30.0) -> None:
        """Run a stdlib-only Python snippet as nobody to completion."""
        p = self.nobody([PYTHON, "-c", code], stdin=subprocess.PIPE)
        p.communicate(stdin, timeout)
        assert p.returncode == 0, f"attacker snippet failed ({p.returncode})"

    def miner_latency(self, timeout: float = 15.0) -> float:
        """Seconds from starting a miner-like burner as nobody to its finding in the log."""
        self.miners += 1  # its own path: one miner does not fold into the last one
        (self.bin / str(self.miners)).mkdir(mode=0o755)
        burner = self.bin / str(self.miners) / "xmrig"
        burner.write_text(BURNER.format(python=PYTHON))
        burner.chmod(0o755)
        start = time.monotonic()
        miner = self.nobody([str(burner), "--donate-level", "1"], env={"BURN_SECONDS": "20"})
        self.agent.wait_for(
            lambda r: r["category"] == "miner" and (r["process"] or {}).get("pid") == miner.pid,
            timeout=timeout,
        )
        latency = time.monotonic() - start
        miner.kill()
        miner.wait(10)
        return latency
