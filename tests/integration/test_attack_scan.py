"""Attacks on scanning, run as uid 65534: against the real agent (its drop scans) and
against `sentinel scan`; after each one a miner-like process is still reported in time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from attacker import Nobody, guarded_agent, nobody_home, then_miner_reported
from fakes import fake_elf_miner

from sentinel.cli.codes import EX_FINDINGS

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors and setuid need root"),
    pytest.mark.timeout(120),
]

nobody = pytest.fixture(nobody_home)

PAD = b"grep " * (1024 * 1024 // 5)  # regex-heavy for the dropper rules: seconds per MB
DROP_PADDED = """
import sys
miner = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "wb") as f:
    f.write(miner[:64] + sys.stdin.buffer.read() + miner[64:])
"""


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_yara_timeout_is_a_finding_in_agent_and_scan(nobody: Nobody, procs: list) -> None:
    """Attack 6: a miner padded with regex-heavy junk so the rules time out (1 s here)."""
    agent, guard = guarded_agent(nobody, extra="[scan]\ntimeout = 1\n")
    try:
        miner = fake_elf_miner(nobody.base / "miner")
        padded = agent.watch / "kdevtmpfsi"
        done = subprocess.run(
            ["/usr/bin/python3", "-c", DROP_PADDED, str(miner), str(padded)],
            input=PAD,
            user=65534,
            group=65534,
            extra_groups=[],
            env=nobody.env(),
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        rec = agent.wait_for(
            lambda r: (
                r["rule"] == "integrity.scan_timeout"
                and (r["file"] or {}).get("path") == str(padded)
            ),
            timeout=20,
        )
        assert rec["severity"] in ("medium", "high", "critical") and rec["file"]["sha256"]
        cfg = str(agent.root / "sentinel.toml")
        run = scan("-c", cfg, "--json", "--no-cache", str(agent.watch))
        doc = json.loads(run.stdout)
        timeouts = [f for f in doc["findings"] if f["rule"] == "integrity.scan_timeout"]
        print(f"attack 6: sentinel scan exit {run.returncode}, {len(timeouts)} timeout finding")
        assert run.returncode == EX_FINDINGS, run.stderr
        assert [f["file"]["path"] for f in timeouts] == [str(padded)]
        text = scan("-c", cfg, "--no-cache", str(agent.watch))
        assert text.returncode == EX_FINDINGS and "kdevtmpfsi" in text.stdout
        then_miner_reported(agent, guard, nobody, procs)
    finally:
        guard.stop()
        agent.stop()


SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
tree, n = sys.argv[1], int(sys.argv[2])
pairs = [(os.fsencode(f"{tree}/q{i}"), os.fsencode(f"{tree}/q{i}.lnk")) for i in range(n)]
while True:  # swap each queued-looking directory with a link to a root-only one, and back
    for a, b in pairs:
        libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
"""


UNSWAP = """
import ctypes, os, shutil, sys
libc = ctypes.CDLL(None, use_errno=True)
tree, n = sys.argv[1], int(sys.argv[2])
for i in range(n):  # every pair back the right way round, then drop a real miner
    a, b = os.fsencode(f"{tree}/q{i}"), os.fsencode(f"{tree}/q{i}.lnk")
    if os.path.islink(a):
        libc.renameat2(-100, a, -100, b, 2)
shutil.copy(sys.argv[3], sys.argv[4])
"""


def test_directory_swapped_for_a_symlink_mid_scan_is_not_walked(
    nobody: Nobody, procs: list
) -> None:
    """Attack 13: uid 65534 keeps exchanging 100 directories of its tree with symlinks to a
    root-only directory while `sentinel scan` walks it; the scan never walks the target."""
    secret = nobody.base / "secret"
    secret.mkdir(mode=0o700)
    fake_elf_miner(secret / "root-only-miner")
    tree = nobody.home / "tree"
    nobody.run(
        "import os, sys\n"
        "for i in range(100):\n"
        "    os.makedirs(f'{sys.argv[1]}/q{i}/inner')\n"
        "    os.symlink(sys.argv[2], f'{sys.argv[1]}/q{i}.lnk')\n",
        str(tree),
        str(secret),
    )
    cfg = nobody.base / "scan.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{nobody.base / "scan-state"}"\n')
    swapper = nobody.spawn(SWAPPER, str(tree), "100")
    procs.append(swapper)
    raced = 0
    for _ in range(3):
        run = scan("-c", str(cfg), "--json", "--no-cache", str(tree))
        doc = json.loads(run.stdout)
        walked = [f["file"]["path"] for f in doc["findings"] if f["file"]]
        assert not [p for p in walked if "root-only-miner" in p], walked
        raced += sum(
            1 for s in doc["stats"]["skipped"] if s["reason"] in ("symlink", "changed", "vanished")
        )
    swapper.kill()
    swapper.wait(10)
    assert raced, "the swaps never raced the walker: the test proved nothing"
    real = fake_elf_miner(nobody.base / "xmrig-real")
    nobody.run(UNSWAP, str(tree), "100", str(real), str(tree / "q7" / "inner" / "xmrig"))
    run = scan("-c", str(cfg), "--json", "--no-cache", str(tree))
    found = [f["file"]["path"] for f in json.loads(run.stdout)["findings"] if f["file"]]
    print(
        f"attack 13: {raced} swapped directories refused over 3 scans; then exit {run.returncode}"
    )
    assert run.returncode == EX_FINDINGS and str(tree / "q7" / "inner" / "xmrig") in found
