"""Attacks on the files collector, each run as uid 65534 against the real agent; after each
one a miner-like process is still reported in time, under MemoryHigh, with no watchdog kill."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from agent_harness import touches
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


def private_key() -> list[str]:
    body = base64.b64encode(secrets.token_bytes(300)).decode()
    lines = [body[i : i + 70] for i in range(0, len(body), 70)]
    return ["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"]


SWAP_TO_LINK = """
import os, sys
place, target = sys.argv[1], sys.argv[2]
os.rename(place, place + ".old")
os.symlink(target, place)
if len(sys.argv) > 3:  # keep writing where the watch still points: the moved directory
    with open(os.path.join(place + ".old", sys.argv[3]), "w") as f:
        f.write("[Desktop Entry]\\nExec=/bin/true\\n")
"""


def test_symlinked_home_places_and_canary_are_refused_not_read(nobody: Nobody, procs: list) -> None:
    """Attack 2: home places swapped for links to a root-only directory (at start and while
    running), a canary replaced by a link, a root-owned file in the home: nothing of the
    root-only files is read, shipped or armed; evidence is redacted, capped and hashed."""
    secret = nobody.base / "root-secret"
    secret.mkdir(mode=0o700)
    key = private_key()
    for name in ("x.desktop", "id_ed25519"):
        (secret / name).write_text("\n".join(key) + "\n")
    config = nobody.home / ".config"
    nobody.run(
        "import os, sys\n"
        "os.makedirs(os.path.expanduser('~/.config/autostart'))\n"
        "os.makedirs(os.path.expanduser('~/.config/systemd'))\n"
        "os.symlink(sys.argv[1], os.path.expanduser('~/.config/systemd/user'))\n",
        str(secret),
    )
    root_owned = config / "autostart" / "root.desktop"
    root_owned.write_text("[Desktop Entry]\n")
    agent, guard = guarded_agent(nobody, home_files=[".config/autostart", ".config/systemd/user"])
    try:

        def refused(place: Path):
            return lambda r: (
                r["rule"] == "integrity.collector_degraded"
                and f"{place}: a symlink to {secret}" in r["summary"]
            )

        rec = agent.wait_for(refused(config / "systemd" / "user"), timeout=10)
        assert rec["severity"] in ("medium", "high", "critical")
        # an owned autostart entry: reported with a redacted excerpt and the file's sha256
        token = "ghp_" + secrets.token_hex(18)
        leak = config / "autostart" / "sync.desktop"
        text = "\n".join(["[Desktop Entry]", f"Exec=/tmp/.s/run --token {token}", *key]) + "\n"
        nobody.run("import sys; open(sys.argv[1], 'w').write(sys.argv[2])", str(leak), text)
        rec = agent.wait_for(lambda r: (r["file"] or {}).get("path") == str(leak), timeout=10)
        assert rec["file"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert "<redacted> private key" in rec["evidence"]["added"]
        with root_owned.open("a") as f:  # not the user's file: never read
            f.write("Exec=/opt/root-only-marker\n")
        # the watched directory moved away and a link put in its place, then written to
        nobody.run(SWAP_TO_LINK, str(config / "autostart"), str(secret), "x.desktop")
        agent.wait_for(refused(config / "autostart"), timeout=10)
        # a canary replaced by a link to the root-only key; then root reads the key
        agent.canary.parent.chmod(0o777)
        nobody.run(SWAP_TO_LINK, str(agent.canary), str(secret / "id_ed25519"))
        reader = subprocess.Popen(
            ["/bin/cat", str(secret / "id_ed25519")], stdout=subprocess.DEVNULL
        )
        procs.append(reader)
        reader.wait(10)
        then_miner_reported(agent, guard, nobody, procs)
        log = agent.log.read_text()
        assert not any(line in log for line in key[1:-1]), "a root-only key reached the log"
        assert token not in log and "root-only-marker" not in log
        armed = [
            r
            for r in agent.records()
            if touches(r, [reader.pid])
            or (r["file"] or {}).get("path") == str(secret / "id_ed25519")
        ]
        assert not armed, "the canary link's target was armed"
    finally:
        guard.stop()
        agent.stop()
