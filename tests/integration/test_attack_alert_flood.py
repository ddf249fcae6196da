"""Attack 7: alert flood. As nobody, 200 medium findings (a different argv[1] each, so
none folds) and then a miner: the chat sink sends the high alert ahead of the queued
mediums, rolls the flood up into one message, and the alert log still gets every one.
The spool drops the lowest severity first and never a high while lower ones remain."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun
from attack import PYTHON, Siege, world_dir
from receiver import Receiver, ThreadedReceiver

from sentinel.core.config import SinkConfig
from sentinel.sinks._http.delivery import Outbound, Pending, Spool

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(120),
]

FLOOD = 120
ROLLUP_AFTER = 3
WINDOW = 3.0
SPAWNER = """
import os, sys
bindir, n, text = sys.argv[1], int(sys.argv[2]), os.environ.pop("TEXT")
pids = [os.posix_spawn(f"{bindir}/w{i}", [f"{bindir}/w{i}", str(i), text], os.environ)
        for i in range(n)]
for p in pids:
    os.waitpid(p, 0)
"""


def chat_texts(rx: Receiver) -> list[str]:
    return [r.json()["text"] for r in list(rx.requests)]


def test_a_medium_flood_does_not_bury_the_miner_in_chat() -> None:
    root = world_dir("attack7")
    try:
        with ThreadedReceiver() as rx:
            sink = (
                f'[[sinks]]\ntype = "slack"\nname = "chat"\nurl = "{rx.url()}"\n'
                f"min_severity = 'medium'\nrollup_after = {ROLLUP_AFTER}\n"
                f"rollup_window = {WINDOW}\n"
            )
            agent = AgentRun(root / "agent", extra=sink)
            with Siege(agent) as siege:
                for i in range(FLOOD):  # one script each: argv[1] differs, nothing folds
                    script = siege.bin / f"w{i}"
                    script.write_text("#!/bin/sh\nsleep 3\n")
                    script.chmod(0o755)
                spawner = siege.nobody(
                    [PYTHON, "-c", SPAWNER, str(siege.bin), str(FLOOD)], env={"TEXT": "chattr +i"}
                )
                agent.wait_for(
                    lambda r: (
                        r["rule"] == "evasion.chattr_immutable"
                        and r["process"]["cmdline"][2] == str(FLOOD - 1)
                    ),
                    timeout=30,
                )
                started = time.monotonic()
                siege.miner_latency()
                while not any("xmrig" in t for t in chat_texts(rx)):
                    assert time.monotonic() - started < 15, chat_texts(rx)[-5:]
                    time.sleep(0.1)
                in_chat = time.monotonic() - started
                spawner.wait(30)
                deadline = time.monotonic() + WINDOW + 30  # behind other chat traffic at 1/s
                while not any("medium findings of rule" in t for t in chat_texts(rx)):
                    assert time.monotonic() < deadline, "no rollup message"
                    time.sleep(0.2)
                logged = [r for r in agent.records() if r["rule"] == "evasion.chattr_immutable"]
                texts = chat_texts(rx)
                rolled = [t for t in texts if "medium findings of rule evasion.chattr" in t]
                singles = [t for t in texts if "chattr" in t and t not in rolled]
                print(
                    f"attack 7: {len(logged)} mediums logged, {len(singles)} sent singly, "
                    f"{len(rolled)} rollups ({rolled[0][:60]!r}); miner in chat {in_chat:.1f}s "
                    f"after it started, {len(texts)} chat messages in all"
                )
                assert len(logged) == FLOOD  # the log gets every finding
                assert len(singles) <= ROLLUP_AFTER * 3 and rolled
                assert in_chat < 10
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_queue_and_spool_put_the_severe_first(tmp_path: Path) -> None:
    def msg(sev: str, n: int) -> Outbound:
        return Outbound("firing", {"id": f"{sev}{n}", "severity": sev, "rule": "r"})

    pending = Pending()
    for m in [msg("low", 1), msg("medium", 1), msg("critical", 1), msg("high", 1), msg("low", 2)]:
        pending.push(m)
    retry = msg("medium", 2)
    pending.push(retry, front=True)
    order = [pending.pop().record["id"] for _ in range(len(pending))]
    assert order == ["critical1", "high1", "medium2", "medium1", "low1", "low2"]

    spool = Spool(tmp_path / "spool", "t", SinkConfig(spool_max_count=4))
    spool.open()
    kept = [msg("high", 1), msg("critical", 1)]
    for m in [kept[0], msg("low", 1), msg("medium", 1), kept[1], msg("low", 2), msg("info", 1)]:
        spool.put(m)
    for n in range(10):
        spool.put(msg("medium", 10 + n))  # the flood
    left = {
        json.loads((tmp_path / "spool" / f"{k}.json").read_bytes())["record"]["id"]
        for k in spool.entries
    }
    assert {"high1", "critical1"} <= left and len(left) == 4
    assert not {"low1", "low2", "info1"} & left
    for n in range(5):
        spool.put(msg("high", 10 + n))  # nothing lower left: now highs go, oldest first
    assert "critical1" in {
        json.loads((tmp_path / "spool" / f"{k}.json").read_bytes())["record"]["id"]
        for k in spool.entries
    }
