"""The procs collector on real processes (netlink and sweep-only) and on a fixture procfs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from collector_run import Running

from sentinel.collectors import procs as procs_mod
from sentinel.collectors.procs import ProcsCollector, parse
from sentinel.core import config, proctable
from sentinel.core.events import HostCpu, ProcCpu, ProcExec, ProcExit
from sentinel.ops import metrics

pytestmark = pytest.mark.timeout(60)

SLEEP = "import time; time.sleep(30)"
ROOT = os.geteuid() == 0


def cfg(interval: float = 30.0, netlink: bool = True, sample: float = 0.0) -> config.Config:
    """Long sweeps unless asked: an event that comes quickly came from netlink."""
    load = f"sample_interval = {sample}\n" if sample else "enabled = false\n"
    return config.parse(
        f"[agent]\ninterval = {interval}\nnetlink = {str(netlink).lower()}\n[load]\n{load}"
    )


def dropped(source: str) -> float:
    return metrics.events_dropped.labels(source)._value.get()


@pytest.mark.skipif(not ROOT, reason="the process connector subscription is tested as root")
async def test_exec_and_exit_come_from_netlink(procs: list[subprocess.Popen]) -> None:
    async with Running(ProcsCollector, cfg()) as run:
        assert run.state().ok, run.state().reason
        child = subprocess.Popen([sys.executable, "-c", SLEEP, "--donate-level=1"])
        procs.append(child)
        ev = await run.wait(ProcExec, lambda e: e.proc.pid == child.pid, timeout=1.0)
        assert ev.source == "netlink"
        assert ev.proc.cmdline[-1] == "--donate-level=1"
        assert ev.proc.ppid == os.getpid() and ev.proc.ancestors[0].pid == os.getpid()
        assert ev.proc.exe == os.path.realpath(sys.executable)
        child.kill()
        child.wait()
        gone = await run.wait(ProcExit, lambda e: e.pid == child.pid, timeout=1.0)
        assert gone.start_time == ev.proc.start_time


async def test_sweep_only_mode_reports_degraded_and_still_sees_processes(
    procs: list[subprocess.Popen],
) -> None:
    async with Running(ProcsCollector, cfg(interval=0.2, netlink=False)) as run:
        state = run.state()
        assert not state.ok and "netlink" in state.reason
        child = subprocess.Popen([sys.executable, "-c", SLEEP, "sweep-me"])
        procs.append(child)
        ev = await run.wait(ProcExec, lambda e: e.proc.pid == child.pid)
        assert ev.source == "sweep" and ev.proc.cmdline[-1] == "sweep-me"
        child.kill()
        child.wait()
        await run.wait(ProcExit, lambda e: e.pid == child.pid)
        assert len(run.of(ProcExec, lambda e: e.proc.pid == child.pid)) == 1


async def test_processes_running_at_start_are_reported(procs: list[subprocess.Popen]) -> None:
    child = subprocess.Popen([sys.executable, "-c", SLEEP, "already-here"])
    procs.append(child)
    time.sleep(0.1)
    async with Running(ProcsCollector, cfg(netlink=False)) as run:
        ev = await run.wait(ProcExec, lambda e: e.proc.pid == child.pid, timeout=1.0)
        assert ev.proc.cmdline[-1] == "already-here"


@pytest.mark.skipif(not ROOT, reason="netlink fork events are tested as root")
async def test_fork_without_exec_is_reported(procs: list[subprocess.Popen]) -> None:
    code = (
        "import os, sys, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n    time.sleep(30)\n    os._exit(0)\n"
        "print(pid, flush=True)\ntime.sleep(30)\n"
    )
    async with Running(ProcsCollector, cfg()) as run:
        parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(parent)
        assert parent.stdout is not None
        forked = int(await asyncio.to_thread(parent.stdout.readline))
        try:
            ev = await run.wait(ProcExec, lambda e: e.proc.pid == forked, timeout=3.0)
            assert ev.source == "fork" and ev.proc.ppid == parent.pid
        finally:
            os.kill(forked, 9)


@pytest.mark.skipif(not ROOT, reason="netlink events are tested as root")
async def test_threads_are_not_processes(procs: list[subprocess.Popen]) -> None:
    code = (
        "import sys, threading, time\n"
        "for _ in range(4):\n"
        "    threading.Thread(target=time.sleep, args=(0.3,)).start()\n"
        "print('up', flush=True)\ntime.sleep(30)\n"
    )
    async with Running(ProcsCollector, cfg(interval=0.2)) as run:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(child)
        assert child.stdout is not None
        await asyncio.to_thread(child.stdout.readline)
        tids = {int(t) for t in os.listdir(f"/proc/{child.pid}/task")} - {child.pid}
        assert len(tids) == 4
        await asyncio.sleep(1.5)  # the threads ended; sweeps ran; forked-child grace passed
        assert not run.of(ProcExit, lambda e: e.pid == child.pid)  # a thread ended, not it
        child.kill()
        child.wait()
        await run.wait(ProcExit, lambda e: e.pid == child.pid)
        seen = {e.proc.pid for e in run.of(ProcExec)} | {e.pid for e in run.of(ProcExit)}
        assert child.pid in seen and not tids & seen


@pytest.mark.skipif(not ROOT, reason="netlink comm events are tested as root")
async def test_renamed_process_is_reported_again(procs: list[subprocess.Popen]) -> None:
    code = (
        "import ctypes, sys, time\n"
        "sys.stdin.readline()\n"
        "ctypes.CDLL(None).prctl(15, b'kworker/0:1', 0, 0, 0)\n"
        "time.sleep(30)\n"
    )
    async with Running(ProcsCollector, cfg()) as run:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
        procs.append(child)
        first = await run.wait(ProcExec, lambda e: e.proc.pid == child.pid, timeout=1.0)
        assert first.proc.name != "kworker/0:1"
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        ev = await run.wait(ProcExec, lambda e: e.source == "comm" and e.proc.pid == child.pid)
        assert ev.proc.name == "kworker/0:1" and ev.proc.start_time == first.proc.start_time


@pytest.mark.skipif(not ROOT, reason="netlink overrun is tested as root")
async def test_netlink_overrun_is_counted_and_reconciled(
    procs: list[subprocess.Popen], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procs_mod, "RCVBUF", 0)  # the kernel's minimum receive buffer
    before = dropped("procs.netlink")
    async with Running(ProcsCollector, cfg()) as run:
        # the loop is blocked here: the kernel queues events until the small buffer overruns
        for _ in range(60):
            subprocess.run(["true"], check=True)
        late = subprocess.Popen([sys.executable, "-c", SLEEP, "after-the-storm"])
        procs.append(late)
        time.sleep(0.2)
        ev = await run.wait(ProcExec, lambda e: e.proc.pid == late.pid, timeout=2.0)
        assert ev.proc.cmdline[-1] == "after-the-storm"
        assert dropped("procs.netlink") > before
        assert ev.source == "sweep"  # its exec event was lost; the reconciling sweep found it


async def test_cpu_samples_per_process_and_host(procs: list[subprocess.Popen]) -> None:
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass", "cpuminer-ish"])
    procs.append(burner)
    async with Running(ProcsCollector, cfg(netlink=False, sample=0.3)) as run:
        ev = await run.wait(ProcCpu, lambda e: burner.pid in e.cpu, timeout=5.0)
        assert 0 < ev.cpu[burner.pid] <= ev.span * (os.cpu_count() or 1) + 0.05
        assert ev.procs[burner.pid].cmdline[-1] == "cpuminer-ish"
        assert all(v > 0 for v in ev.cpu.values()) and ev.procs.keys() == ev.cpu.keys()
        host = await run.wait(HostCpu)
        assert 0.0 <= host.busy <= 1.0 and host.cores == os.cpu_count()


SPAWNER = """
import subprocess, sys, time
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.1: pass"
end = time.time() + 2.5
while time.time() < end:
    subprocess.run([sys.executable, "-c", burn])
time.sleep(30)
"""


async def test_reaped_children_cpu_lands_on_the_parent_once(
    procs: list[subprocess.Popen],
) -> None:
    """A compile-like parent whose short-lived workers end between samples still carries
    their CPU, and nothing is counted twice."""
    async with Running(ProcsCollector, cfg(netlink=True, sample=0.5)) as run:
        parent = subprocess.Popen([sys.executable, "-c", SPAWNER])
        procs.append(parent)
        await asyncio.sleep(4.0)  # 2.5 s of workers, then the parent only sleeps
        total = proctable.cpu_times(parent.pid)
        assert total is not None and total[1] > 0.5
        await asyncio.sleep(1.2)  # two more samples see the final reaped time
        samples = run.of(ProcCpu)
        on_parent = sum(e.cpu.get(parent.pid, 0.0) for e in samples)
        workers = {pid for e in samples for pid, p in e.procs.items() if p.ppid == parent.pid}
        on_workers = sum(e.cpu.get(pid, 0.0) for e in samples for pid in workers)
    true_total = sum(total)
    assert on_parent > 0.3 * total[1]  # most workers ended unsampled: their time is here
    assert abs(on_parent + on_workers - true_total) <= 0.1 + 0.1 * true_total


def write_proc(root: Path, pid: int, name: str, ticks: int, start: int = 1000) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 6 + [str(start)]
    (d / "stat").write_text(f"{pid} ({name}) {' '.join(fields)}\n")
    (d / "cmdline").write_bytes(name.encode() + b"\0--fixture\0")
    (d / "status").write_text("Name:\tx\nUid:\t0\t0\t0\t0\n")


@contextlib.asynccontextmanager
async def host_running(write: Callable[[int], None]) -> AsyncIterator[None]:
    """Call write(t) every 0.05 s (t = 0, 1, ...): host counters that keep rising."""

    async def run() -> None:
        for t in itertools.count():
            write(t)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def write_host(root: Path, busy: int, idle: int) -> None:
    (root / "stat").write_text(
        f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\nbtime 1700000000\n"
    )


async def test_fixture_procfs_sweep_and_samples(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    root.mkdir()
    write_host(root, busy=100, idle=900)
    write_proc(root, 42, "xmrig", ticks=100)
    write_proc(root, 43, "kthread", ticks=0)
    (root / "43" / "cmdline").unlink()  # no image to read: skipped, not an error
    proctable.boot_time.cache_clear()
    async with Running(ProcsCollector, cfg(interval=0.1, sample=0.2), str(root)) as run:
        assert not run.state().ok and "procfs" in run.state().reason
        ev = await run.wait(ProcExec, lambda e: e.proc.pid == 42)
        assert ev.proc.cmdline == ["xmrig", "--fixture"] and ev.source == "sweep"
        assert not run.of(ProcExec, lambda e: e.proc.pid == 43)
        await run.wait(ProcCpu)  # the first sample with a span before the change
        tick = 1 / proctable.CLK_TCK
        write_proc(root, 42, "xmrig", ticks=100 + int(0.2 * proctable.CLK_TCK))
        # the host keeps running time no busy process explains (42 burns as far as it can
        # tell) until the idle 42 is read in its share of a sample
        async with host_running(lambda t: write_host(root, busy=400 + 30 * t, idle=1000 + 10 * t)):
            cpu = await run.wait(ProcCpu, lambda e: 42 in e.cpu)
            host = await run.wait(HostCpu, lambda e: e.busy > 0)
        assert cpu.cpu[42] == pytest.approx(0.2, abs=tick)
        assert 0 < host.busy <= 1 and host.cores == 2
        # 300 s of CPU within one sample on 2 cores is a misread: clamped and counted
        clamped = metrics.cpu_clamped._value.get()
        write_proc(root, 42, "xmrig", ticks=100 + 300 * proctable.CLK_TCK)
        cpu = await run.wait(ProcCpu, lambda e: e.cpu.get(42, 0.0) > 0.3)
        assert cpu.cpu[42] < 2 * 3.0 and metrics.cpu_clamped._value.get() == clamped + 1
        write_proc(root, 44, "new", ticks=0)
        await run.wait(ProcExec, lambda e: e.proc.pid == 44)
        for f in (root / "42").iterdir():
            f.unlink()
        (root / "42").rmdir()
        gone = await run.wait(ProcExit, lambda e: e.pid == 42)
        assert gone.start_time == ev.proc.start_time
    proctable.boot_time.cache_clear()


def datagram(what: int, data: bytes, idx: int = procs_mod.CN_IDX_PROC) -> bytes:
    event = struct.pack("=IIQ", what, 0, 0) + data
    cn = struct.pack("=IIIIHH", idx, procs_mod.CN_VAL_PROC, 0, 0, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_parse_proc_connector_datagrams() -> None:
    execd = datagram(procs_mod.PROC_EVENT_EXEC, struct.pack("=II", 7, 7))
    fork = datagram(procs_mod.PROC_EVENT_FORK, struct.pack("=IIII", 1, 1, 9, 9))
    thread_exit = datagram(procs_mod.PROC_EVENT_EXIT, struct.pack("=IIII", 11, 10, 0, 17))
    foreign = datagram(procs_mod.PROC_EVENT_EXEC, struct.pack("=II", 5, 5), idx=7)
    events = list(parse(execd + fork + thread_exit + foreign + execd[:20]))
    assert [(e.what, e.pid, e.tgid) for e in events] == [
        (procs_mod.PROC_EVENT_EXEC, 7, 7),
        (procs_mod.PROC_EVENT_FORK, 9, 9),
        (procs_mod.PROC_EVENT_EXIT, 11, 10),
    ]
    assert events[1].parent_tgid == 1


ZOMBIE_MAKER = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)
time.sleep(30)  # never reaps: the child stays a zombie
"""


async def test_zombies_are_not_rediscovered_by_the_sweep(procs: list[subprocess.Popen]) -> None:
    async with Running(ProcsCollector, cfg(interval=0.2)) as run:
        maker = subprocess.Popen([sys.executable, "-c", ZOMBIE_MAKER], stdout=subprocess.PIPE)
        procs.append(maker)
        assert maker.stdout is not None
        zombie = int(maker.stdout.readline())
        deadline = time.monotonic() + 5
        while not Path(f"/proc/{zombie}/stat").read_text().split(") ")[1].startswith("Z"):
            assert time.monotonic() < deadline, "the child never became a zombie"
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)  # five sweeps
        assert run.of(ProcExec, lambda e: e.proc.pid == maker.pid)
        assert not run.of(ProcExec, lambda e: e.proc.pid == zombie and e.source == "sweep")


def write_tasks(root: Path, ticks: int) -> None:
    """Host counters whose task time (user+nice+system) is `ticks`."""
    (root / "stat").write_text(
        f"cpu  {ticks} 0 0 100000 0 0 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\nbtime 1700000000\n"
    )


async def test_idle_processes_wait_while_the_busy_ones_explain_the_host(tmp_path: Path) -> None:
    """A process that used no CPU is not read again while the host's task time is what the
    busy processes used; once the host ran more than they did, it is read (in rotation)
    and what it used in the meantime counts."""
    root = tmp_path / "proc"
    root.mkdir()
    write_tasks(root, 1000)
    write_proc(root, 42, "sleeper", ticks=100)
    proctable.boot_time.cache_clear()
    skipped = metrics.idle_samples_skipped._value.get
    async with Running(ProcsCollector, cfg(interval=0.1, sample=0.2), str(root)) as run:
        await run.wait(ProcExec, lambda e: e.proc.pid == 42)
        before = skipped()
        deadline = time.monotonic() + 10
        while skipped() == before:  # the start's rotation is over: the sleeper is idle
            assert time.monotonic() < deadline, "no sample skipped the idle processes"
            await asyncio.sleep(0.05)
        # its counters move, the host's do not: nothing can be burning, it is not read
        write_proc(root, 42, "sleeper", ticks=100 + proctable.CLK_TCK)
        before = skipped()
        await asyncio.sleep(1.0)  # five samples
        assert skipped() >= before + 3
        assert not run.of(ProcCpu, lambda e: 42 in e.cpu)
        # the host ran a second that no busy process explains: the idle ones are read
        async with host_running(lambda t: write_tasks(root, 1000 + proctable.CLK_TCK * (1 + t))):
            woke = await run.wait(ProcCpu, lambda e: 42 in e.cpu, timeout=10)
        assert woke.cpu[42] == pytest.approx(1.0)
    proctable.boot_time.cache_clear()


async def test_a_sleeper_that_starts_burning_is_sampled(procs: list[subprocess.Popen]) -> None:
    """Among idle processes the rotation skips, one that starts to burn is read again."""
    late = "import time\ntime.sleep(2.0)\nwhile True: pass"
    sleepers = [subprocess.Popen([sys.executable, "-c", SLEEP]) for _ in range(20)]
    procs.extend(sleepers)
    burner = subprocess.Popen([sys.executable, "-c", late, "cpuminer-late"])
    procs.append(burner)
    async with Running(ProcsCollector, cfg(netlink=False, sample=0.3)) as run:
        ev = await run.wait(ProcCpu, lambda e: e.cpu.get(burner.pid, 0) > 0.1, timeout=20)
        assert ev.procs[burner.pid].cmdline[-1] == "cpuminer-late"
