"""Attack 1: fd exhaustion. As nobody: hundreds of idle connections to the metrics port
and a network namespace per process. The agent's fds stay bounded (connection cap, idle
timeout, no fd kept per namespace) and a miner started right after is still reported.
A /proc read that fails for lack of fds is retried, never taken as "imageless", and one
that keeps failing is an integrity finding."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agent_harness import AgentRun
from attack import Siege, world_dir

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent's collectors need root"),
    pytest.mark.timeout(120),
]

FD_LIMIT = 128
CONNECTIONS = 200
NAMESPACES = 100

HOLDER = """
import socket, sys, time
from concurrent.futures import ThreadPoolExecutor
def connect(_):
    try:
        return socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    except OSError:
        return None
with ThreadPoolExecutor(64) as pool:
    held = [s for s in pool.map(connect, range(int(sys.argv[2]))) if s]
print(len(held), flush=True)
time.sleep(60)
"""


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_fd_exhaustion_as_nobody_does_not_blind_the_agent() -> None:
    root = world_dir("attack1")
    try:
        agent = AgentRun(
            root / "agent",
            agent=f"max_open_files = {FD_LIMIT}",
            extra="[traffic]\nmax_namespaces = 16\n",
            metrics="listen = '127.0.0.1:0'\nmax_connections = 16\nidle_timeout = 2.0",
        )
        with Siege(agent) as siege:
            limits = Path(f"/proc/{siege.pid}/limits").read_text()
            assert f"Max open files            {FD_LIMIT}" in limits
            peak = fd_count(siege.pid)
            stop = threading.Event()

            def watch_fds() -> None:
                nonlocal peak
                while not stop.wait(0.05):
                    with contextlib.suppress(OSError):
                        peak = max(peak, fd_count(siege.pid))

            watcher = threading.Thread(target=watch_fds, daemon=True)
            watcher.start()
            holder = siege.nobody(
                ["/usr/bin/python3", "-c", HOLDER, str(agent.metrics_port()), str(CONNECTIONS)],
                stdout=subprocess.PIPE,
            )
            assert holder.stdout is not None
            opened = int(holder.stdout.readline())
            loop = f"for i in $(seq {NAMESPACES}); do unshare -rn sleep 60 & done; wait"
            siege.nobody(["/bin/sh", "-c", loop])
            time.sleep(agent.interval * 6)  # a few net sweeps over every namespace
            latency = siege.miner_latency()
            stop.set()
            watcher.join(5)
            print(
                f"attack 1: {opened} connections, {NAMESPACES} namespaces; agent fds peak "
                f"{peak} of {FD_LIMIT}; miner reported in {latency:.1f}s"
            )
            assert opened > FD_LIMIT  # the kernel took them; the agent did not keep them
            assert peak < FD_LIMIT * 3 // 4
            assert latency < 10
    finally:
        shutil.rmtree(root, ignore_errors=True)


CHILD = """
import asyncio, json, os, resource, sys
from sentinel.collectors.procs import ProcsCollector
from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.events import CollectorState, ProcExec
from sentinel.rules import intel

events = []
collector = ProcsCollector(Context(config.parse(""), intel.load()), events.append)
target = int(sys.argv[1])

async def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for _ in range(3):
        collector.discover(target, "netlink")
    blind = {"known": target in collector.known, "imageless": target in collector.imageless,
             "states": [[e.ok, e.detail.get("severity")] for e in events
                        if isinstance(e, CollectorState)]}
    for fd in held:
        os.close(fd)
    collector.sweep()
    seen = [e.proc.pid for e in events if isinstance(e, ProcExec)]
    after = [e.ok for e in events if isinstance(e, CollectorState)]
    print(json.dumps({**blind, "found": target in seen, "after": after}))

asyncio.run(main())
"""


def test_proc_reads_out_of_fds_are_retried_and_loud(procs) -> None:
    target = subprocess.Popen(["sleep", "30"])
    procs.append(target)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(target.pid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["known"] is False and seen["imageless"] is False
    assert seen["states"] == [[False, "medium"]]  # one integrity finding after 3 tries
    assert seen["found"] is True and seen["after"] == [False, True]
