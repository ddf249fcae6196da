"""Attacks on the files collector, each run as uid 65534 against the real agent; after each
one a miner-like process is still reported in time, under MemoryHigh, with no watchdog kill."""

from __future__ import annotations

import os
import time

import pytest
from attacker import MINER_LATENCY, Nobody, guarded_agent, nobody_home, then_miner_reported
from fakes import fake_elf_miner

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors and setuid need root"),
    pytest.mark.timeout(120),
]

nobody = pytest.fixture(nobody_home)


AUTOSTART_FLOOD = """
import os, sys
d = os.path.expanduser("~/.config/autostart")
os.makedirs(d, exist_ok=True)
body = b"ab\\n" * (256 * 1024 // 3)
for i in range(int(sys.argv[1])):
    with open(f"{d}/flood-{i}.desktop", "wb") as f:
        f.write(body)
"""


def test_autostart_of_two_character_lines_keeps_rss_bounded(nobody: Nobody, procs: list) -> None:
    """Attack 3: 100 files of 256 KB of two-character lines; snapshots are line hashes."""
    nobody.run(AUTOSTART_FLOOD, "100")  # there before the agent starts, as after a crash
    agent, guard = guarded_agent(nobody, home_files=[".config/autostart"])
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


MKDIRS = """
import os, sys
for i in range(int(sys.argv[2])):
    os.mkdir(os.path.join(sys.argv[1], f"d{i}"))
"""
RMDIRS = """
import os, sys
for name in os.listdir(sys.argv[1]):
    os.rmdir(os.path.join(sys.argv[1], name))
"""
DROP_DEEP = """
import os, shutil, sys
deep = os.path.join(sys.argv[1], "late", "deeper")
os.makedirs(deep)
shutil.copy(sys.argv[2], os.path.join(deep, "kdevtmpfsi"))
"""


def test_spent_watch_budget_is_loud_and_drop_depth_recovers(nobody: Nobody, procs: list) -> None:
    """Attack 5: directories made and removed in a drop root spend the watch budget (40 here,
    65,536 by default); that is a medium integrity finding, and once they are gone drops are
    watched to the full depth again (a miner dropped two levels down is reported)."""
    agent, guard = guarded_agent(nobody, watch_extra="max_watches = 40")
    try:
        nobody.run(MKDIRS, str(agent.watch), "60")
        spent = agent.wait_for(
            lambda r: (
                r["rule"] == "integrity.collector_degraded"
                and r["evidence"]["collector"] == "files"
                and "watch limit" in r["summary"]
            ),
            timeout=10,
        )
        assert spent["severity"] in ("medium", "high", "critical")
        assert "drops watched to depth 0 instead of 4" in spent["summary"]
        nobody.run(RMDIRS, str(agent.watch))
        deadline = time.monotonic() + 15
        while not any("drops watched to depth 4 again" in line for line in agent.stderr):
            assert time.monotonic() < deadline, "drop depth never recovered"
            time.sleep(0.1)
        payload = fake_elf_miner(nobody.base / "payload")
        nobody.run(DROP_DEEP, str(agent.watch), str(payload))
        dropped = agent.watch / "late" / "deeper" / "kdevtmpfsi"
        agent.wait_for(
            lambda r: r["category"] == "miner" and (r["file"] or {}).get("path") == str(dropped),
            timeout=MINER_LATENCY,
        )
        print("attack 5: drop depth 4 -> 0 at the limit -> 4 once the directories were removed")
        then_miner_reported(agent, guard, nobody, procs)
    finally:
        guard.stop()
        agent.stop()
