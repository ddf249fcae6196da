"""The agent's idle cost with many processes, against a bare psutil sweep in the same run.

Starts the real `sentinel agent` on defaults (only its state, log and metrics port moved to a
tmp config), waits for `ready`, adds N sleeping processes, lets it settle, then for the
window measures the agent's CPU (% of one core) and peak RSS with psutil on its pid. In the
same window, once per agent.interval, the benchmark itself does one bare psutil sweep
(process_iter with cpu_times, memory_info, cmdline) and times it: the baseline. Prints both,
the ratio and the targets (<= 1% of one core, <= 100 MB RSS). Every process it starts is
ended by its pid.

    sudo python3 benchmarks/bench_overhead.py [--procs 1000,10000] [--window 60]

With several counts, each gets its own agent and its own baseline, one after the other.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil

from sentinel.core import config

CPU_TARGET = 1.0  # % of one core
RSS_TARGET = 100.0  # MB
MB = 1024 * 1024
ACTIVITY = ("ProcExec", "ProcExit", "FileChange", "FileAccess", "NetConn")  # not timers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(tmp: Path, port: int) -> tuple[subprocess.Popen, Path]:
    cfg = tmp / "sentinel.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp / "state"}"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    state = tmp / "state"  # its output goes there too: the agent's own files are not drops
    state.mkdir()
    err = state / "agent.stderr"
    with open(err, "wb") as e, open(state / "agent.stdout", "wb") as o:
        cli = shutil.which("sentinel") or f"{sys.executable} -m sentinel.cli"
        agent = subprocess.Popen([*cli.split(), "agent", "-c", str(cfg)], stdout=o, stderr=e)
    return agent, err


def wait_ready(agent: subprocess.Popen, err: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in err.read_text(errors="replace").splitlines():
            if "ready" in line:
                return line
        if agent.poll() is not None:
            raise SystemExit(f"agent exited ({agent.returncode}):\n{err.read_text()}")
        time.sleep(0.05)
    raise SystemExit(f"no 'ready' line within {timeout}s:\n{err.read_text()}")


TOKEN: dict[int, str] = {}  # metrics port -> bearer token of that agent


def events_handled(port: int) -> Counter[str]:
    """sentinel_events_total by event type, from the agent's own metrics endpoint."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    req.add_header("Authorization", f"Bearer {TOKEN.get(port, '')}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return Counter()
    pattern = r'^sentinel_events_total\{type="([^"]+)"\} (\S+)$'
    return Counter({t: float(v) for t, v in re.findall(pattern, text, re.M)})


def bare_sweep() -> tuple[float, int]:
    """CPU seconds of one psutil sweep of every process, and how many it saw."""
    start = time.thread_time()
    n = 0
    for p in psutil.process_iter(["cpu_times", "memory_info", "cmdline"]):
        n += 1
        _ = p.info
    return time.thread_time() - start, n


def cpu_seconds(agent: psutil.Process) -> float:
    t = agent.cpu_times()
    return t.user + t.system


def measure(agent: psutil.Process, port: int, window: float, interval: float) -> dict:
    """Agent CPU and RSS over the window, with one bare sweep per interval beside it, and
    slices of (events handled, agent CPU %) to find a quiet stretch. A slice spans the
    longer of agent.interval and load.sample_interval, so each holds every periodic pass."""
    slice_len = max(interval, config.LoadConfig().sample_interval)
    ev0 = last_ev = events_handled(port)
    cpu0 = last_cpu = cpu_seconds(agent)
    t0 = last_t = time.monotonic()
    peak = agent.memory_info().rss
    sweeps: list[tuple[float, int]] = []
    slices: list[tuple[float, float]] = []
    next_sweep, next_slice = t0, t0 + slice_len
    while (now := time.monotonic()) < t0 + window:
        if now >= next_slice:
            ev, cpu = events_handled(port), cpu_seconds(agent)
            busy = sum((ev - last_ev)[k] for k in ACTIVITY)
            slices.append((busy, 100 * (cpu - last_cpu) / (now - last_t)))
            last_ev, last_cpu, last_t = ev, cpu, now
            next_slice += slice_len
        if now >= next_sweep:
            sweeps.append(bare_sweep())
            next_sweep += interval
        peak = max(peak, agent.memory_info().rss)
        time.sleep(min(0.5, max(0.0, t0 + window - time.monotonic())))
    span = time.monotonic() - t0
    used = cpu_seconds(agent) - cpu0
    base = sum(s for s, _ in sweeps)
    return {
        "span": span,
        "agent_cpu": 100 * used / span,
        "agent_rss": peak / MB,
        "base_cpu": 100 * base / span,
        "sweeps": len(sweeps),
        "per_proc_us": 1e6 * base / max(sum(n for _, n in sweeps), 1),
        "events": events_handled(port) - ev0,
        "slice": slice_len,
        "quietest": min(slices, default=(float("nan"), float("nan"))),
    }


def hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--procs", default="1000", help="sleeping processes to add, comma-separated counts"
    )
    parser.add_argument("--extra", type=int, help="one count (same as --procs N)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after adding")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("note: not root; the agent runs degraded (see its ready line)", file=sys.stderr)
    counts = [args.extra] if args.extra is not None else [int(n) for n in args.procs.split(",")]
    codes = [run_one(n, args) for n in counts]
    return max(codes)


def run_one(extra: int, args: argparse.Namespace) -> int:
    """One agent, `extra` sleeping processes, one measured window; prints the block."""
    interval = config.AgentConfig().interval
    sleepers: list[subprocess.Popen] = []
    agent: subprocess.Popen | None = None
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        try:
            agent, err = start_agent(tmp, port)
            ready = wait_ready(agent, err)
            TOKEN[port] = (tmp / "state" / "metrics.token").read_text().strip()
            proc = psutil.Process(agent.pid)
            cpu_ready = sum(proc.cpu_times()[:2])
            t_add = time.monotonic()
            for _ in range(extra):
                sleepers.append(
                    subprocess.Popen(
                        ["sleep", "3600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
                    )
                )
            added_in = time.monotonic() - t_add
            time.sleep(args.settle)
            add_cpu = sum(proc.cpu_times()[:2]) - cpu_ready
            r = measure(proc, port, args.window, interval)
            nprocs = len(psutil.pids())
            hwm = hwm_mb(agent.pid)
        finally:
            for p in sleepers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
            for p in sleepers:
                p.wait()
            if agent is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.pid, signal.SIGTERM)
                try:
                    agent.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(agent.pid, signal.SIGKILL)
                    agent.wait()
    ratio = r["agent_cpu"] / r["base_cpu"] if r["base_cpu"] else float("inf")
    ok_cpu = "ok" if r["agent_cpu"] <= CPU_TARGET else "OVER"
    ok_rss = "ok" if max(r["agent_rss"], hwm) <= RSS_TARGET else "OVER"
    print(f"== {extra} sleeping processes ==")
    print(f"agent: {ready.removeprefix('sentinel: ')}")
    print(
        f"setup: {extra} sleeping processes added in {added_in:.1f} s "
        f"(agent CPU for them and {args.settle:.0f} s of settling: {add_cpu:.2f} s); "
        f"{nprocs} processes on the box"
    )
    events = r["events"]
    kinds = ", ".join(f"{k} {v:.0f}" for k, v in events.most_common())
    quiet_events, quiet_cpu = r["quietest"]
    print(
        f"window: {r['span']:.1f} s, agent.interval {interval:g} s, "
        f"events the agent handled in it: {events.total():.0f} ({kinds or 'none'})"
    )
    print(
        f"quietest {r['slice']:g}-s slice: {quiet_events:.0f} process/file/network events, "
        f"agent CPU {quiet_cpu:.2f} % of one core (CPU time is counted in 10 ms ticks)"
    )
    print(
        f"agent CPU:     {r['agent_cpu']:6.3f} % of one core   "
        f"(target <= {CPU_TARGET:g} %: {ok_cpu})"
    )
    print(
        f"agent RSS:     {r['agent_rss']:6.1f} MB peak in window, {hwm:.1f} MB lifetime peak "
        f"(target <= {RSS_TARGET:g} MB: {ok_rss})"
    )
    print(
        f"baseline CPU:  {r['base_cpu']:6.3f} % of one core   "
        f"(one bare psutil sweep per interval: {r['sweeps']:.0f} sweeps, "
        f"{r['per_proc_us']:.0f} us per process)"
    )
    print(f"ratio agent/baseline: {ratio:.2f}")
    return 0 if ok_cpu == ok_rss == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
