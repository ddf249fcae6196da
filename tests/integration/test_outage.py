"""Outage: the receiver is down while 200 findings fire, the agent is SIGKILLed mid-way and
restarted, the receiver comes back: every finding arrives, duplicates only with their id."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import stat
import sys
import uuid
from pathlib import Path

from receiver import Receiver, verify_standard_webhook
from sinkkit import KEY, SECRET, free_port

AGENT = Path(__file__).parents[1] / "support" / "outage_agent.py"
TOTAL = 200


class Agent:
    """tests/support/outage_agent.py as a child process: feed ids on stdin, read acks on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.acked: list[str] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path) -> Agent:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(AGENT),
            str(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            word, _, fid = line.decode().strip().partition(" ")
            if word == "acked":
                self.acked.append(fid)

    async def feed(self, ids: list[str], start: int, pause: float = 0.0) -> None:
        assert self.proc.stdin is not None
        for i, fid in enumerate(ids):
            self.proc.stdin.write(f"{fid} {start + i}\n".encode())
            await self.proc.stdin.drain()
            if pause:
                await asyncio.sleep(pause)

    async def until(self, cond, timeout: float) -> None:
        async def wait() -> None:
            while not cond():
                assert self.proc.returncode is None, "agent exited"
                await asyncio.sleep(0.01)

        await asyncio.wait_for(wait(), timeout)

    async def end(self, sig: int) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        await asyncio.gather(self.reader, return_exceptions=True)
        return code


async def test_no_alert_lost_across_outage_and_sigkill(tmp_path) -> None:
    port = free_port()  # nothing listens here until the receiver "comes back"
    state = tmp_path / "state"
    config = tmp_path / "sentinel.toml"
    config.write_text(
        f"[agent]\nstate_dir = '{state}'\n[log]\nstdout = false\n"
        "[metrics]\nlisten = '127.0.0.1:0'\n"
        f"[[sinks]]\ntype = 'webhook'\nname = 'hook'\nurl = 'http://127.0.0.1:{port}/in'\n"
        f"secret = '{SECRET}'\nmin_severity = 'info'\ntimeout = 1.0\n"
        "retry_initial = 0.05\nretry_max_delay = 0.3\n"
    )
    ids = [uuid.uuid4().hex for _ in range(TOTAL)]
    spool = state / "spool" / "hook"
    rx = Receiver()
    rx.check = lambda req: verify_standard_webhook(req, KEY)
    agents: list[Agent] = []
    try:
        first = await Agent.start(config)
        agents.append(first)
        feeding = asyncio.create_task(first.feed(ids, 0, pause=0.004))
        await first.until(lambda: len(first.acked) >= 80, timeout=30)
        assert await first.end(signal.SIGKILL) == -signal.SIGKILL  # mid-way, mid-stream
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        acked = set(first.acked)
        assert len(acked) < TOTAL
        files = list(spool.glob("*.json"))
        assert len(files) >= len(acked)  # nothing was delivered, everything taken is on disk
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

        second = await Agent.start(config)
        agents.append(second)
        rest = [fid for fid in ids if fid not in acked]
        await second.feed(rest, TOTAL - len(rest))
        await second.until(lambda: set(second.acked) >= set(rest), timeout=30)

        await rx.start(port)  # the receiver comes back
        await rx.wait_for(lambda: {r.json()["id"] for r in rx.requests} >= set(ids), timeout=60)
        await second.until(lambda: not list(spool.glob("*.json")), timeout=30)
        assert await second.end(signal.SIGTERM) == 0
    finally:
        for agent in agents:
            await agent.end(signal.SIGKILL)
        await rx.stop()
    assert rx.problems == []
    # the second agent says the first one was killed (engine/state.py); the rest is the feed
    restarts = [r for r in rx.requests if r.json()["rule"] == "integrity.agent_restarted"]
    assert restarts and restarts[0].json()["evidence"]["clean_stop"] is False
    fed = [r for r in rx.requests if r not in restarts]
    seen = collections.Counter(r.json()["id"] for r in fed)
    assert set(seen) == set(ids)  # every finding arrived, nothing else did
    assert all(r.headers["webhook-id"] == r.json()["id"] for r in fed)
    assert len(fed) - TOTAL == sum(n - 1 for n in seen.values())
