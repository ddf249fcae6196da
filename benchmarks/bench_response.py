"""Finding to tree frozen, and finding to egress cut, for a tree of 50 processes.

The response runs as the agent runs it: the engine's Responder gets a finding on an
asyncio loop, decides, runs the sequence (freeze, forensics, egress, kill) in its worker
thread and publishes a `response.<action>` record back on the loop as each step ends;
the clock stops when the record arrives. Egress is real nftables inside a network
namespace this benchmark creates (the host ruleset is never touched), with the tree
running as `nobody` in that namespace and the scope `user:nobody`.

Baseline, in the same run over the same pids: a bare `kill -STOP` loop (os.kill over
the 50 known pids, no walk, no identity check, no pidfd).

Needs root, iproute2, util-linux (setpriv, nsenter) and nftables.

    sudo python3 benchmarks/bench_response.py [--rounds 15] [--procs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from fakes import write_forker

from sentinel.core import config
from sentinel.core.model import Category, Finding, Severity
from sentinel.core.proctable import read_proc
from sentinel.response.egress import Nft
from sentinel.response.responder import Responder
from sentinel.response.targets import descendants

NOBODY = 65534


def wait_tree(pid: int, n: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = descendants([pid])
        if len(pids) >= n:
            return pids
        time.sleep(0.01)
    raise RuntimeError(f"tree of {pid} did not reach {n} processes")


def start_tree(script: Path, ns: str, n: int) -> subprocess.Popen[bytes]:
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *drop, str(script)],
        env={"PATH": "/usr/bin:/bin", "BURN_SECONDS": "60", "FORK_MAX": str(n)},
        start_new_session=True,
    )


def end_tree(p: subprocess.Popen[bytes]) -> None:
    for pid in reversed(descendants([p.pid])):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    p.wait(10)


def baseline(pids: list[int]) -> float:
    """Seconds for a bare SIGSTOP loop over known pids (then they are continued)."""
    t0 = time.perf_counter()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    took = time.perf_counter() - t0
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    return took


async def one_round(cfg: config.Config, pid: int) -> dict[str, float]:
    """Finding -> response record arrival on the loop, per action, in seconds."""
    seen: dict[str, float] = {}
    done = asyncio.Event()

    def publish(f: Finding) -> None:
        seen[f.evidence["action"]] = time.perf_counter() - t0
        assert f.evidence["result"] == "done", f.summary
        if f.evidence["action"] == "kill":
            done.set()

    responder = Responder(lambda: cfg, publish)
    proc = read_proc(pid)
    assert proc is not None
    finding = Finding("miner.process_name", Category.MINER, Severity.HIGH, "bench", "bench", proc)
    t0 = time.perf_counter()
    responder.consider(finding)
    await asyncio.wait_for(done.wait(), 30)
    responder.close()
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--procs", type=int, default=50)
    args = ap.parse_args()
    ns = f"sbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-response-"))
    tmp.chmod(0o755)
    try:
        script = write_forker(tmp / "xmrig")
        wrapper = tmp / "nft"
        wrapper.write_text(f'#!/bin/sh\nexec nsenter --net=/run/netns/{ns} nft "$@"\n')
        wrapper.chmod(0o755)
        cfg = config.parse(
            f'[agent]\nstate_dir = "{tmp / "state"}"\n'
            f'[response]\nmode = "enforce"\nscope = "user:nobody"\nnft = "{wrapper}"\n'
            '[[response.rules]]\ncategory = "miner"\n'
            'actions = ["freeze", "forensics", "egress", "kill"]\n'
        )
        frozen, cut, bare = [], [], []
        for _ in range(args.rounds):
            p = start_tree(script, ns, args.procs)
            try:
                pids = wait_tree(p.pid, args.procs)
                time.sleep(0.2)  # let the last forks settle into their idle loop
                bare.append(baseline(pids))
                seen = asyncio.run(one_round(cfg, p.pid))
                frozen.append(seen["freeze"])
                cut.append(seen["egress"])
            finally:
                end_tree(p)
                Nft([str(wrapper)]).release(None)
        f50, c50, b50 = (statistics.median(x) * 1000 for x in (frozen, cut, bare))
        print(f"tree of {args.procs} processes, {args.rounds} rounds (p50, ms)")
        print(f"  baseline bare kill -STOP loop:      {b50:8.2f}")
        print(f"  finding -> tree frozen:             {f50:8.2f}  ({f50 / b50:.1f}x baseline)")
        print(f"  finding -> egress cut:              {c50:8.2f}  ({c50 / b50:.1f}x baseline)")
        print(
            f"  targets: frozen <= 100 ms {'met' if f50 <= 100 else 'MISSED'}, "
            f"egress <= 200 ms {'met' if c50 <= 200 else 'MISSED'}"
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
