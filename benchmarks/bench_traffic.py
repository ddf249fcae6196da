"""The traffic collector's cost under bulk TCP and DNS load, against the same run without it.

Builds two test namespaces joined by a veth pair on 198.51.100.0/24 (no host route
changes), runs the real agent, and measures its CPU (% of one core, from psutil on its pid)
over each window:

  1. bulk: one TCP flow of python sendall(4 MiB) between the namespaces for --window s,
     with [traffic] enabled = false (the baseline) and then enabled; prints both, the
     added CPU, their ratio and each run's throughput (target: >= 1 Gbit/s, <= 2 % of one
     core added);
  2. dns: --dns-rate queries/s from the box to a resolver in the other namespace, each
     answered with an A record (the collector believes only answers to queries it saw
     leave), for --dns-window s
     against an idle window of the same length with the collector on (target <= 5 % of one
     core added);
  3. latency: --logins stratum logins from distinct python3 workers; the time from the
     worker's send to the finding's time in the alert log (target: p50 <= 1 s).

Every process it starts is ended by its pid; the namespaces are removed at the end.

    sudo .venv/bin/python benchmarks/bench_traffic.py [--window 30] [--dns-window 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from agent_harness import AgentRun, record_time
from netpair import INET_IP, Pair, netpair, ready, watched
from wire import xmrig_login

BULK_TARGET, DNS_TARGET, LATENCY_TARGET = 2.0, 5.0, 1.0
POOL_ADDR = "198.51.100.10"
SETTLE = 12.0  # the agent's first sweeps after start are not part of any window

RECEIVER = r"""
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001))
s.listen(64)
def sink(c):
    buf = bytearray(4 << 20)
    while c.recv_into(buf):
        pass
def pool(c):
    with c:
        while c.recv(65536):
            pass
def serve(listener, talk):
    while True:
        threading.Thread(target=talk, args=(listener.accept()[0],), daemon=True).start()
p = socket.socket()
p.bind(("0.0.0.0", 443))
p.listen(64)
threading.Thread(target=serve, args=(p, pool), daemon=True).start()
print("up", flush=True)
serve(s, sink)
"""

SENDER = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], 5001))
buf, sent, end = bytes(4 << 20), 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    c.sendall(buf)
    sent += len(buf)
print(sent, flush=True)
"""

RESOLVER = r"""
import socket, struct
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 53))
print("up", flush=True)
while True:
    q, peer = u.recvfrom(512)
    i = 12
    while q[i]:
        i += 1 + q[i]
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([198, 51, 100, 20 + q[1] % 200])
    u.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01" + bytes(4) + q[12 : i + 5] + rr, peer)
"""

DNS = r"""
import socket, struct, sys, time
rate, seconds, dst = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((dst, 53))
u.setblocking(False)
def query(i):
    name = b"".join(bytes([len(p)]) + p for p in f"host{i % 5000}.bench.test".encode().split(b"."))
    return struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + b"\x00\x00\x01\x00\x01"
start, n, answered = time.monotonic(), 0, 0
while time.monotonic() - start < seconds:
    u.send(query(n))
    n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
    try:
        while u.recv(512):
            answered += 1
    except BlockingIOError:
        pass
print(answered, flush=True)
"""

LOGIN = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], 443))
data = sys.stdin.buffer.read()
c.sendall(data)
print(time.time(), flush=True)
time.sleep(30)
"""


def cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def agent_cpu_over(
    agent: AgentRun, seconds: float, work: subprocess.Popen[bytes] | None = None
) -> tuple[float, str]:
    """% of one core the agent used over `seconds`, or until `work` printed its result."""
    assert agent.proc is not None
    before, start, said = cpu(agent.proc.pid), time.monotonic(), ""
    if work is not None:
        said = ready(work, timeout=seconds + 30)
    else:
        time.sleep(seconds)
    return 100 * (cpu(agent.proc.pid) - before) / (time.monotonic() - start), said


def start(root: Path, enabled: bool) -> AgentRun:
    agent = AgentRun(root, interval=5.0, extra=f"[traffic]\nenabled = {str(enabled).lower()}\n")
    agent.start(timeout=60)
    return agent


def bulk(pair: Pair, root: Path, enabled: bool, window: float) -> tuple[float, float]:
    agent = start(root, enabled)
    try:
        if enabled:
            watched(pair.procs[1].pid, timeout=30)
        time.sleep(SETTLE)
        sender = pair.python(pair.box, SENDER, INET_IP, str(window))
        used, said = agent_cpu_over(agent, window, sender)
        gbit = int(said) * 8 / window / 1e9
        return used, gbit
    finally:
        agent.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--dns-window", type=float, default=10.0)
    ap.add_argument("--dns-rate", type=int, default=1000)
    ap.add_argument("--logins", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-traffic-"))
    with netpair(extra=(POOL_ADDR,)) as pair:
        ready(pair.python(pair.inet, RECEIVER))
        ready(pair.python(pair.inet, RESOLVER))
        pair.resident(pair.box)
        off, off_rate = bulk(pair, tmp / "off", False, args.window)
        on, on_rate = bulk(pair, tmp / "on", True, args.window)
        added = on - off
        print(f"bulk TCP  off (baseline): {off:.2f} % of one core at {off_rate:.2f} Gbit/s")
        print(f"bulk TCP  on:             {on:.2f} % of one core at {on_rate:.2f} Gbit/s")
        print(
            f"bulk TCP  added: {added:+.2f} % of one core (target <= {BULK_TARGET}), "
            f"ratio on/off {on / off if off else float('inf'):.2f}"
        )

        agent = start(tmp / "dns", True)
        try:
            watched(pair.procs[1].pid, timeout=30)
            time.sleep(SETTLE)
            idle, _ = agent_cpu_over(agent, args.dns_window)
            sender = pair.python(pair.box, DNS, str(args.dns_rate), str(args.dns_window), INET_IP)
            busy, said = agent_cpu_over(agent, args.dns_window, sender)
            sent = int(said)
            print(f"dns idle (baseline): {idle:.2f} % of one core")
            print(
                f"dns {sent / args.dns_window:.0f} answers/s: {busy:.2f} % of one core, "
                f"added {busy - idle:+.2f} (target <= {DNS_TARGET})"
            )

            delays = []
            for i in range(args.logins):
                script = tmp / f"job{i}.py"
                script.write_text(LOGIN)
                p = pair.run(
                    pair.box, [sys.executable, str(script), INET_IP], xmrig_login("4BENCH")
                )
                sent_at = float(ready(p))
                rec = agent.wait_for(
                    lambda r, pid=p.pid: (
                        r["rule"] == "network.stratum_protocol"
                        and (r.get("process") or {}).get("pid") == pid
                    ),
                    timeout=15,
                )
                delays.append(record_time(rec) - sent_at)
            p50 = statistics.median(delays)
            print(
                f"payload-to-finding over {len(delays)} logins: p50 {p50 * 1000:.0f} ms, "
                f"max {max(delays) * 1000:.0f} ms (target p50 <= {LATENCY_TARGET * 1000:.0f} ms)"
            )
        finally:
            agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
