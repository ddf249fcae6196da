"""Attack 4: 150 processes with 1.9 MB command lines, one of them a miner whose
`--donate-level` comes after the padding. Rules judge the whole command line; memory,
records and the alert log keep 8 KiB of it plus its sha256 and length."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from agent_harness import AgentRun
from attack import PYTHON, Siege, world_dir
from fakes import BURNER

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(120),
]

PROCESSES = 150
PAD_ARGS = 15  # of 127,000 bytes: a single argument may not exceed 128 KiB
SPAWNER = f"""
import os, sys
miner, flag = sys.argv[1], os.environ.pop("FLAG")
pad = ["A" * 127000] * {PAD_ARGS}
pids = [os.posix_spawn(miner, [miner, *pad, flag, "1"], os.environ)]
print(pids[0], flush=True)
pids += [os.posix_spawn("/bin/sh", ["sh", "-c", "sleep 30", "x", *pad], os.environ)
         for _ in range({PROCESSES - 1})]
for p in pids:
    os.waitpid(p, 0)
"""


def test_huge_command_lines_are_judged_whole_and_kept_capped() -> None:
    root = world_dir("attack4")
    try:
        agent = AgentRun(root / "agent")
        with Siege(agent) as siege:
            burner = siege.bin / "padded" / "xmrig"
            burner.parent.mkdir(mode=0o755)
            burner.write_text(BURNER.format(python=PYTHON))
            burner.chmod(0o755)
            spawner = siege.nobody(
                [PYTHON, "-c", SPAWNER, str(burner)],
                stdout=subprocess.PIPE,
                env={"BURN_SECONDS": "30", "FLAG": "--donate-level"},
            )
            assert spawner.stdout is not None
            miner = int(spawner.stdout.readline())
            rec = agent.wait_for(
                lambda r: (
                    r["rule"] == "miner.cmdline.miner_flag"
                    and (r["process"] or {}).get("pid") == miner
                ),
                timeout=20,
            )
            whole = rec["process"]["cmdline_len"]
            assert whole > 1_900_000 and len(rec["process"]["cmdline_sha256"]) == 64
            assert sum(len(a) + 1 for a in rec["process"]["cmdline"]) <= 8193
            latency = siege.miner_latency()
            lines = agent.log.read_bytes().splitlines()
            assert all(len(line) <= 64 * 1024 for line in lines)
            assert all(json.loads(line) for line in lines)
            log_bytes = agent.log.stat().st_size
            print(
                f"attack 4: {PROCESSES} x {whole} bytes argv; agent RSS peak "
                f"{siege.peak_kb // 1024} MiB; alert log {log_bytes} bytes; "
                f"miner after it in {latency:.1f}s"
            )
            assert log_bytes < 2 * 1024 * 1024
    finally:
        shutil.rmtree(root, ignore_errors=True)
