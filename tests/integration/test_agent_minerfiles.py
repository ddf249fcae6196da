"""Miner files dropped into a watched tree and lines appended to a followed log, against the
real agent. Hosts are reserved names; wallets are random bytes with valid checksums."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_harness import AgentRun, Record
from fakes import fake_monero_address

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(90),
]

POOL = "pool.minepool.test"


def _about(path: Path) -> Callable[[Record], bool]:
    return lambda r: (r.get("file") or {}).get("path") == str(path)


def test_dropped_miner_kit_files_are_reported_and_a_sigma_rule_is_low(tmp_path: Path) -> None:
    agent = AgentRun(tmp_path, watch_extra="logs = []")
    agent.start()
    try:
        drops = {
            "launch.sh": (
                f"#!/bin/sh\nPOOL={POOL}:4444; WALLET=$1; ALGO=kawpow\n"
                "./t-rex -a $ALGO -o $POOL -u $WALLET -p x\n",
                "yara.miner_launch_variables",
            ),
            "c.json": (
                json.dumps({"pools": [{"url": f"{POOL}:3333", "user": fake_monero_address()}]}),
                "yara.miner_config_minimal_json",
            ),
            "proxy.service": (
                "[Service]\nExecStart=/usr/local/bin/xmrig-proxy -c /etc/proxy.json\n",
                "yara.miner_daemon_systemd_unit",
            ),
            "ps.sh": (
                '#!/bin/bash\n/usr/bin/ps.original "$@" | grep -v -E "kswapd0"\n',
                "yara.evasion_ps_grep_wrapper",
            ),
        }
        sigma = agent.watch / "mining.yml"
        sigma.write_text(
            "title: Miner command line\nlogsource:\n  category: process_creation\n"
            "detection:\n  selection:\n    CommandLine|contains:\n"
            "      - '--donate-level=1'\n  condition: selection\nlevel: high\n"
        )
        notes = agent.watch / "notes"  # no suffix, no shebang: a text file all the same
        notes.write_text(f"todo\n{fake_monero_address()}\n")
        for name, (body, _) in drops.items():
            (agent.watch / name).write_text(body)
        for name, (_, rule) in drops.items():
            rec = agent.wait_for(
                lambda r, n=name, ru=rule: _about(agent.watch / n)(r) and r["rule"] == ru,
                timeout=20,
            )
            assert rec["severity"] in ("high", "critical")
        wallet = agent.wait_for(lambda r: _about(notes)(r) and r["category"] == "wallet")
        assert wallet["severity"] == "medium" and wallet["evidence"]["candidate"] == "text"
        unit = agent.etc / "systemd" / "system" / "sidechain.service"
        unit.write_text(
            "[Service]\nExecStart=/opt/monero/monerod --non-interactive"
            " --zmq-pub tcp://127.0.0.1:18083\n"
        )
        persisted = agent.wait_for(_about(unit), timeout=20)
        assert persisted["severity"] == "high", persisted
        low = agent.wait_for(_about(sigma), timeout=20)
        assert low["severity"] == "low" and low["evidence"]["context"].startswith("detection")
        assert all(r["severity"] == "low" for r in agent.records() if _about(sigma)(r))
    finally:
        agent.stop()


def test_appended_log_lines_are_judged_and_old_content_is_not(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    train = logs / "job" / "train.log"
    train.parent.mkdir()
    old_wallet, new_wallet, rotated_wallet = (fake_monero_address() for _ in range(3))
    train.write_text(
        "step 1 loss 2.1\n" * 5 + f"connect stratum+tcp://{POOL}:3333 user {old_wallet}\n"
    )
    agent = AgentRun(tmp_path, watch_extra=f'logs = ["{logs}/**/*.log"]\nlogs_interval = 0.3')
    agent.start()
    try:
        time.sleep(1.0)  # a few passes over the old content
        with train.open("a") as f:
            f.write("step 2 loss 1.9\n")
            f.write(f"miner: login to stratum+tcp://{POOL}:3333 as {new_wallet}.rig\n")
        wallet = agent.wait_for(
            lambda r: r["rule"] == "wallet.log_line" and _about(train)(r), timeout=20
        )
        assert wallet["severity"] == "medium" and wallet["evidence"]["line"] == 8
        assert [w["address"] for w in wallet["evidence"]["wallets"]] == [new_wallet]
        url = agent.wait_for(
            lambda r: r["rule"] == "miner.cmdline.stratum_url" and _about(train)(r), timeout=5
        )
        assert url["evidence"]["line"] == 8 and url["evidence"]["log"] == str(train)

        os.rename(train, train.with_suffix(".log.1"))  # rotation: a new file, read from 0
        train.write_text(f"payout {rotated_wallet}\n")
        again = agent.wait_for(
            lambda r: (
                r["rule"] == "wallet.log_line"
                and r["evidence"]["wallets"][0]["address"] == rotated_wallet
            ),
            timeout=20,
        )
        assert again["evidence"]["line"] == 1
        seen = json.dumps(agent.records())
        assert old_wallet not in seen
    finally:
        agent.stop()


def test_renamed_process_with_an_xmrig_style_line_without_a_scheme(
    tmp_path: Path, procs: list[subprocess.Popen]
) -> None:
    agent = AgentRun(tmp_path, watch_extra="logs = []")
    agent.start()
    try:
        line = ["-a", "gr", "-o", f"{POOL}:3008", "-u", "RQm2xc4k7vKd3H1bX8aQ.rig", "-p", "x"]
        argv = ["systemd-helper", "-c", "import time; time.sleep(30)", *line]
        p = subprocess.Popen(argv, executable=sys.executable)  # argv[0] renamed, no shell
        procs.append(p)
        rec = agent.wait_for(
            lambda r: (
                r["rule"] == "miner.cmdline.pool_login"
                and (r.get("process") or {}).get("pid") == p.pid
            ),
            timeout=20,
        )
        assert rec["severity"] == "high", rec
        assert rec["process"]["cmdline"][0] == "systemd-helper", rec["process"]
    finally:
        agent.stop()
