"""Attacks on the files collector, each run as uid 65534 against the real agent; after each
one a miner-like process is still reported in time, under MemoryHigh, with no watchdog kill."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import AgentRun
from attacker import MINER_LATENCY, Guard, Nobody, miner_of

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors and setuid need root"),
    pytest.mark.timeout(120),
]


@pytest.fixture
def nobody() -> Iterator[Nobody]:
    user = Nobody()
    yield user
    user.cleanup()


def guarded_agent(tmp_path: Path, nobody: Nobody, **kw: object) -> tuple[AgentRun, Guard]:
    agent = AgentRun(tmp_path, homes=[str(nobody.homes / "*")], **kw)  # type: ignore[arg-type]
    guard = Guard(nobody.base)
    guard.start(agent)
    return agent, guard


def then_miner_reported(agent: AgentRun, guard: Guard, nobody: Nobody, procs: list) -> None:
    miner = nobody.miner(procs)
    agent.wait_for(miner_of(miner.pid), timeout=MINER_LATENCY)
    guard.check()


AUTOSTART_FLOOD = """
import os, sys
d = os.path.expanduser("~/.config/autostart")
os.makedirs(d, exist_ok=True)
body = b"ab\\n" * (256 * 1024 // 3)
for i in range(int(sys.argv[1])):
    with open(f"{d}/flood-{i}.desktop", "wb") as f:
        f.write(body)
"""


def test_autostart_of_two_character_lines_keeps_rss_bounded(
    tmp_path: Path, nobody: Nobody, procs: list
) -> None:
    """Attack 3: 100 files of 256 KB of two-character lines; snapshots are line hashes."""
    nobody.run(AUTOSTART_FLOOD, "100")  # there before the agent starts, as after a crash
    agent, guard = guarded_agent(tmp_path, nobody, home_files=[".config/autostart"])
    try:
        before = guard.rss[0] if guard.rss else agent.rss_kb()
        nobody.run(AUTOSTART_FLOOD.replace("flood-", "more-"), "100")  # and 100 more live
        more = nobody.home / ".config" / "autostart" / "more-99.desktop"
        agent.wait_for(lambda r: (r["file"] or {}).get("path") == str(more), timeout=30)
        after = agent.rss_kb()
        print(f"attack 3: agent RSS {before} kB at start, {after} kB after, max {max(guard.rss)}")
        then_miner_reported(agent, guard, nobody, procs)
    finally:
        guard.stop()
        agent.stop()
