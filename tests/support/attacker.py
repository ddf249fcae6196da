"""The watched agent as an unprivileged user (uid 65534) against the real `sentinel agent`.

`Nobody` gives that user a home in a fresh world-readable dir, runs attack code as it and
starts a miner-like burner as it; `Guard` samples the agent's RSS and receives its sd_notify
watchdog pings for the whole attack, so a test can show the agent stayed under the unit's
MemoryHigh and was never stalled long enough for its watchdog to kill it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from agent_harness import AgentRun, Record
from fakes import write_burner

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # the test's own interpreter lives under root's 0700 home
UNIT = Path(__file__).parents[2] / "systemd" / "sentinel.service"
MINER_LATENCY = 10.0  # seconds: how soon a miner is reported in the scenario tests


def unit_value(key: str) -> str:
    match = re.search(rf"^{key}=(\S+)$", UNIT.read_text(), re.MULTILINE)
    assert match, f"{key} not in {UNIT}"
    return match.group(1)


def memory_high_kb() -> int:
    value = unit_value("MemoryHigh")
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    return int(value[:-1]) * units[value[-1]]


class Nobody:
    """uid 65534 with a home the test made: `home` is theirs, `base` is root's and 0755."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=f"sentinel-nobody-{os.getpid()}-"))
        self.base.chmod(0o755)
        self.homes = self.base / "home"
        self.home = self.homes / "nobody"
        self.home.mkdir(parents=True)
        os.chown(self.home, NOBODY, NOBODY)

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def run(self, code: str, *args: str, timeout: float = 60.0) -> str:
        """Run Python code as uid 65534 in its home; its stdout, or AssertionError on failure."""
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", code, *args],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd=self.home,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"attack failed: {done.stderr}"
        return done.stdout

    def spawn(self, code: str, *args: str) -> subprocess.Popen[bytes]:
        """Start Python code as uid 65534 in the background (the caller ends it by pid)."""
        return subprocess.Popen(
            [SYSTEM_PYTHON, "-c", code, *args],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd=self.home,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )

    def miner(self, procs: list[subprocess.Popen]) -> subprocess.Popen[bytes]:
        """A burner named like a miner, started as uid 65534 (ended by the procs fixture)."""
        where = self.base / f"bin-{secrets.token_hex(3)}"  # argv[1] unique: never a sibling
        where.mkdir(mode=0o755)
        burner = write_burner(where / "xmrig", python=SYSTEM_PYTHON)
        p = subprocess.Popen(
            [str(burner), "--donate-level", "1"],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd=self.home,
            env={**self.env(), "BURN_SECONDS": "20"},
            stdin=subprocess.DEVNULL,
        )
        procs.append(p)
        return p

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def miner_of(pid: int):
    def pred(rec: Record) -> bool:
        return rec["category"] == "miner" and (rec["process"] or {}).get("pid") == pid

    return pred


class Guard:
    """Samples the agent's RSS and receives its watchdog pings until `stop`."""

    PING_USEC = 2_000_000  # WATCHDOG_USEC given to the agent: a ping every second

    def __init__(self, base: Path, name: str = "notify.sock") -> None:
        self.address = str(base / name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self.rss: list[int] = []
        self.agent: AgentRun | None = None
        self.pid: int | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def env(self) -> dict[str, str]:
        """The environment that makes the agent ping this guard (as systemd would)."""
        return {"NOTIFY_SOCKET": self.address, "WATCHDOG_USEC": str(self.PING_USEC)}

    def start(self, agent: AgentRun) -> None:
        """Start the agent under this guard."""
        agent.start(timeout=60, env=self.env())
        assert agent.proc is not None
        self.agent, self.pid = agent, agent.proc.pid
        self.thread.start()

    def _loop(self) -> None:
        assert self.agent is not None
        while not self.done.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.rss.append(self.agent.rss_kb())
            with contextlib.suppress(TimeoutError):
                if b"WATCHDOG=1" in self.sock.recv(4096):
                    self.pings.append(time.monotonic())

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(5)
        with contextlib.suppress(OSError):
            self.sock.close()

    def check(self) -> None:
        """The agent is the same process, stayed under MemoryHigh and kept pinging its
        watchdog more often than the unit's WatchdogSec (so systemd never killed it)."""
        assert self.agent is not None and self.agent.alive(), "agent died"
        assert self.agent.proc is not None and self.agent.proc.pid == self.pid
        assert self.rss and max(self.rss) < memory_high_kb(), (max(self.rss), memory_high_kb())
        limit = float(unit_value("WatchdogSec"))
        stamps = [*self.pings, time.monotonic()]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert len(self.pings) >= 2 and max(gaps) < limit, (len(self.pings), max(gaps, default=0))


def guarded_agent(nobody: Nobody, **kw: object) -> tuple[AgentRun, Guard]:
    """The agent on a tree under the user's 0755 base, its drop root writable by all (/tmp)."""
    agent = AgentRun(nobody.base / "agent", homes=[str(nobody.homes / "*")], **kw)  # type: ignore[arg-type]
    guard = Guard(nobody.base)
    guard.start(agent)
    agent.watch.chmod(0o1777)
    return agent, guard


def then_miner_reported(agent: AgentRun, guard: Guard, nobody: Nobody, procs: list) -> None:
    miner = nobody.miner(procs)
    agent.wait_for(miner_of(miner.pid), timeout=MINER_LATENCY)
    guard.check()


def nobody_home() -> Iterator[Nobody]:
    """A fixture body (`nobody = pytest.fixture(nobody_home)`): a Nobody, removed afterwards."""
    user = Nobody()
    yield user
    user.cleanup()
