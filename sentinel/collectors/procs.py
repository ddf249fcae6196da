"""Processes: netlink exec/fork/exit events as root, a /proc sweep that reconciles (and is
the fallback), and CPU samples per process and for the host."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sentinel.collectors import Collector, Emit, register
from sentinel.core import afterexec, proctable
from sentinel.core.context import Context
from sentinel.core.events import HostCpu, ProcCpu, ProcExec, ProcExit
from sentinel.core.model import Proc, same_start
from sentinel.ops import metrics

log = logging.getLogger(__name__)

# linux/netlink.h, linux/connector.h, linux/cn_proc.h
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_EXIT = 0x80000000
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, port id
CN_MSG = struct.Struct("=IIIIHH")  # cb_id.idx, cb_id.val, seq, ack, len, flags
PROC_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns; event_data follows
TWO_IDS = struct.Struct("=II")  # exec, exit, comm: process pid, tgid
FOUR_IDS = struct.Struct("=IIII")  # fork: parent pid, parent tgid, child pid, child tgid
EVENT_DATA = NLMSGHDR.size + CN_MSG.size + PROC_EVENT.size

RCVBUF = 4 * 1024 * 1024
READ_BATCH = 1024  # datagrams per wake-up, so a storm cannot starve the loop
BATCH_CHARS = 16 * 1024 * 1024  # argv read per wake-up: huge command lines wait their turn
FORK_GRACE = 1.0  # a child that has not exec'd after this long is reported as it is
ACK_TIMEOUT = 0.5
START_CLOCK_SLACK = 1.0  # procfs start times use a whole-second boot time: up to 1 s early
CLAMP_SLACK = 2 / proctable.CLK_TCK  # two reads, each rounded to a clock tick
RETRY_DELAY = 0.5  # seconds before a /proc read that ran out of a resource is tried again
UNREAD_LOUD = 3  # failed tries after which unread processes are an integrity finding
RECONCILE = 6  # with netlink events, the sweep only reconciles: every 6 agent.intervals
SWEEP_CHUNK = 128  # new pids read between two turns of the loop
ROTATE = 6  # an idle process is sampled every 6th sample at most (see `rotation`)
QUIET_SHARE = 0.25  # unexplained host CPU below this share of the load margin: idle ones wait
LEADER_GRACE = 0.2  # seconds after a leader's exit before its other threads are checked


@dataclass(frozen=True, slots=True)
class NlEvent:
    """One process connector event: what happened to which task (pid) of which process."""

    what: int
    pid: int
    tgid: int
    parent_tgid: int = 0


def listen_message(op: int) -> bytes:
    """A netlink datagram asking the process connector to start or stop sending events."""
    payload = struct.pack("=I", op)
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return NLMSGHDR.pack(NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def parse(data: bytes) -> Iterator[NlEvent]:
    """The proc events in one datagram; anything short or foreign is skipped."""
    off = 0
    while off + EVENT_DATA <= len(data):
        length = NLMSGHDR.unpack_from(data, off)[0]
        if length < NLMSGHDR.size or off + length > len(data):
            return
        idx, val = CN_MSG.unpack_from(data, off + NLMSGHDR.size)[:2]
        body = off + EVENT_DATA
        if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC) and off + length >= body + TWO_IDS.size:
            what = PROC_EVENT.unpack_from(data, off + NLMSGHDR.size + CN_MSG.size)[0]
            if what == PROC_EVENT_FORK and off + length >= body + FOUR_IDS.size:
                _, ptgid, pid, tgid = FOUR_IDS.unpack_from(data, body)
                yield NlEvent(what, pid, tgid, ptgid)
            elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT, PROC_EVENT_COMM):
                pid, tgid = TWO_IDS.unpack_from(data, body)
                yield NlEvent(what, pid, tgid)
        off += (length + 3) & ~3


def open_netlink() -> socket.socket:
    """A non-blocking socket subscribed to the process connector; raises OSError if denied.

    The kernel answers a listen request at once, and silently ignores one from outside the
    initial pid and user namespaces (a container): no answer means no events will come.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, CN_IDX_PROC))
        sock.settimeout(ACK_TIMEOUT)
        sock.send(listen_message(PROC_CN_MCAST_LISTEN))
        try:
            sock.recv(8192)  # the answer, or an event: either proves events flow
        except TimeoutError:
            raise OSError(errno.ENOMSG, "no answer to the listen request") from None
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True)
class HostTicks:
    """The host's CPU counters from /proc/stat, in clock ticks."""

    busy: int  # everything but idle and iowait
    total: int
    tasks: int  # user, nice and system: the time processes (and kernel threads) ran
    cores: int


def read_host_cpu(procfs: str) -> HostTicks:
    """The host's CPU counters from the first lines of /proc/stat."""
    with open(os.path.join(procfs, "stat"), "rb") as f:
        text = f.read(65536)
    lines = text.split(b"\n")
    fields = [int(x) for x in lines[0].split()[1:9]]  # user..steal; guest is inside user
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    cores = sum(1 for line in lines[1:] if line.startswith(b"cpu"))
    total = sum(fields)
    return HostTicks(total - idle, total, sum(fields[:3]), max(cores, 1))


@register
class ProcsCollector(Collector):
    """Emits ProcExec for each new process, ProcExit when it ends, and CPU samples."""

    name = "procs"

    def __init__(self, ctx: Context, emit: Emit) -> None:
        super().__init__(ctx, emit)
        self.procfs = self.ctx.procfs
        self.known: dict[int, Proc] = {}
        self.forks: dict[int, float] = {}  # forked, not exec'd yet: pid -> time of fork
        self.imageless: set[int] = set()  # zombies and kernel threads the sweep skips
        self.unread: dict[int, int] = {}  # pid -> failed reads for lack of fds or memory
        self.unread_why = ""
        self.state: tuple[bool, str] = (True, "")  # what to report when reads work again
        self.lost = False  # events were lost: the next sweep checks (pid, start_time) of all
        self.read_chars = 0  # argv characters read since the last netlink wake-up
        self.sock: socket.socket | None = None
        self.wake = asyncio.Event()
        # per pid: (own CPU, reaped children's CPU, when read) at its last read, and the
        # CPU already counted for it (own and children)
        self.cpu_prev: dict[int, tuple[float, float, float]] = {}
        self.counted: dict[int, float] = {}
        self.parent: dict[int, int] = {}  # ppid at the last read (orphans are re-parented)
        # parent pid -> CPU its ended children had used by their last read (counted, or
        # history from before the agent saw them): its cutime rise that is not news
        self.reaped: dict[int, float] = {}
        self.cores = os.cpu_count() or 1  # then the count /proc/stat gives
        self.host_prev: HostTicks | None = None
        self.sampled_at = 0.0
        self.idle: set[int] = set()  # used no CPU at their last read: sampled in rotation
        # kernel threads and zombies (imageless): never judged, but their CPU is part of the
        # host's task time (kdamond scans memory of every process): CPU at their last read
        self.bg_prev: dict[int, float] = {}
        self.bg_busy: set[int] = set()  # used CPU at their last read: read every sample
        self.samples = 0
        self.leaderless: set[int] = set()  # main thread exited, other threads run on

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        degraded = self.start_netlink(loop)
        try:
            with self.measure("initial sweep"):
                await self.sweep_yielding()
            self.ctx.procs.complete = True  # from now on it follows every process
            self.state = (False, degraded) if degraded else (True, "")
            self.report(*self.state)
            interval = self.ctx.config.agent.interval
            sample_every = self.ctx.config.load.sample_interval
            sampling = self.ctx.config.load.enabled and sample_every > 0
            if self.sock is not None:  # events say what is new; the sweep reconciles
                interval *= RECONCILE
            next_sweep = time.monotonic() + interval
            next_sample = time.monotonic()
            while True:
                now = time.monotonic()
                due = min(next_sweep, next_sample) if sampling else next_sweep
                if due > now:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(due - now):
                            await self.wake.wait()
                now = time.monotonic()
                if self.wake.is_set() or now >= next_sweep:
                    self.wake.clear()
                    with self.measure("sweep"):
                        await self.sweep_yielding()
                        await self.recheck()
                    next_sweep = now + interval
                if sampling and now >= next_sample:
                    with self.measure("cpu sample"):
                        self.sample()
                    next_sample = now + sample_every
        finally:
            self.ctx.procs.complete = False
            self.stop_netlink(loop)

    # netlink
    def start_netlink(self, loop: asyncio.AbstractEventLoop) -> str:
        """Subscribe to exec/exit events; '' on success, else why the sweep is all there is."""
        if not self.ctx.config.agent.netlink:
            return "netlink off (agent.netlink = false): new processes seen by the /proc sweep"
        if os.path.realpath(self.procfs) != "/proc":
            return f"procfs is {self.procfs}: netlink describes the real /proc, sweep only"
        try:
            self.sock = open_netlink()
        except OSError as exc:
            why = exc.strerror or str(exc)
            return f"netlink process connector unavailable ({why}): sweeping /proc instead"
        loop.add_reader(self.sock.fileno(), self.on_readable)
        return ""

    def stop_netlink(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock is None:
            return
        loop.remove_reader(self.sock.fileno())
        with contextlib.suppress(OSError):
            self.sock.send(listen_message(PROC_CN_MCAST_IGNORE))
        self.sock.close()
        self.sock = None

    def on_readable(self) -> None:
        if self.sock is None:
            return  # a deferred read after the socket was closed
        self.read_chars = 0
        for _ in range(READ_BATCH):
            if self.read_chars > BATCH_CHARS:  # let the engine take these first
                asyncio.get_running_loop().call_soon(self.on_readable)
                return
            try:
                data = self.sock.recv(8192)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: reconcile now
                    metrics.events_dropped.labels("procs.netlink").inc()
                    self.lost = True
                    self.wake.set()
                    continue
                log.error("netlink read failed: %s", exc)
                metrics.errors.labels("collector.procs").inc()
                return
            for ev in parse(data):
                try:
                    self.on_event(ev)
                except Exception:
                    log.exception("netlink event %s failed", ev)
                    metrics.errors.labels("collector.procs").inc()

    def on_event(self, ev: NlEvent) -> None:
        if ev.what == PROC_EVENT_FORK:  # the parent ran: it may have moved namespaces
            self.ctx.procs.ran(ev.parent_tgid if ev.pid == ev.tgid else ev.tgid)
        if ev.pid != ev.tgid:
            if ev.what == PROC_EVENT_EXIT and ev.tgid in self.leaderless:
                self.leader_check_soon(ev.tgid)  # perhaps the last thread of the process
            return  # a thread, not a process
        if ev.what == PROC_EVENT_EXEC:
            self.forks.pop(ev.tgid, None)
            self.ctx.procs.forget(ev.tgid)  # same pid and start time, new image
            self.discover(ev.tgid, "netlink")
        elif ev.what == PROC_EVENT_FORK:
            self.forks[ev.tgid] = time.monotonic()
            asyncio.get_running_loop().call_later(FORK_GRACE, self.fork_due, ev.tgid)
        elif ev.what == PROC_EVENT_EXIT:
            self.forks.pop(ev.tgid, None)
            if not self.leader_left(ev.tgid):
                self.exited(ev.tgid)
        elif ev.what == PROC_EVENT_COMM:
            self.renamed(ev.tgid)

    def fork_due(self, pid: int) -> None:
        """A forked child that never exec'd (a daemonising fork, a worker) is reported as is."""
        if self.forks.pop(pid, None) is None or pid in self.known:
            return
        proc = self.ctx.procs.get(pid)
        if proc is not None and self.queued(ProcExec(time=time.time(), proc=proc, source="fork")):
            self.known[pid] = proc

    def renamed(self, pid: int) -> None:
        """A process changed its own name (prctl PR_SET_NAME): report it again if it differs."""
        old = self.known.get(pid)
        if old is None:
            return
        self.ctx.procs.forget(pid)
        proc = self.ctx.procs.get(pid)
        if proc is None:
            return
        self.known[pid] = proc
        changed = proc.name != old.name or proc.cmdline != old.cmdline
        if changed and not self.queued(ProcExec(time=time.time(), proc=proc, source="comm")):
            del self.known[pid]  # the next sweep reports it again

    # discovery shared by events and sweeps
    def discover(self, pid: int, source: str) -> None:
        try:
            proc = self.ctx.procs.get(pid, strict=True)
        except proctable.ProcReadError as exc:
            self.read_failed(pid, exc)
            return
        self.unread.pop(pid, None)
        if proc is not None:
            self.read_chars += sum(len(a) for a in proc.cmdline)
        if proc is None:
            if os.path.exists(f"{self.procfs}/{pid}"):
                self.imageless.add(pid)  # a zombie or kernel thread: nothing to judge
            else:  # gone before its facts could be read
                metrics.events_dropped.labels("procs.vanished").inc()
            return
        self.imageless.discard(pid)
        old = self.known.get(pid)
        if old is not None and not same_start(old.start_time, proc.start_time):
            self.queued(ProcExit(time=time.time(), pid=pid, start_time=old.start_time))
        # known only once the engine took the event: a dropped one is read again next sweep
        if self.queued(ProcExec(time=time.time(), proc=proc, source=source)):
            self.known[pid] = proc
        else:
            self.known.pop(pid, None)

    def queued(self, event: ProcExec | ProcExit) -> bool:
        """Emit; if the engine queue was full, remember that a reconcile is owed (a lost
        exit may hide a reused pid) and sweep again soon."""
        if self.emit(event) is not False:
            return True
        if not self.lost:
            self.lost = True
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(RETRY_DELAY, self.wake.set)
        return False

    def read_failed(self, pid: int, exc: OSError) -> None:
        """Out of fds or memory: the pid stays unknown (the next sweep reads it again, one
        comes early); still unread after UNREAD_LOUD tries, it is an integrity finding."""
        metrics.errors.labels("collector.procs.resource").inc()
        tries = self.unread[pid] = self.unread.get(pid, 0) + 1
        self.unread_why = exc.strerror or str(exc)
        if tries == 1:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(RETRY_DELAY, self.wake.set)
        if tries >= UNREAD_LOUD:
            self.report(
                False,
                f"cannot read /proc ({self.unread_why}): new processes unjudged",
                severity="medium",
            )

    # after exec (core/afterexec.py): deleted executables, leaders that exit before threads
    async def recheck(self) -> None:
        """Re-judge each live process whose executable or payload was deleted since it was
        read (an lstat per distinct path, a readlink at most per live process: see
        core/afterexec.py), and end those whose last thread is gone while their leader
        waited as a zombie; the loop runs between chunks."""
        items = list(self.known.items())
        for start in range(0, len(items), SWEEP_CHUNK * 8):
            chunk = dict(items[start : start + SWEEP_CHUNK * 8])
            deleted, leaderless = afterexec.changes(chunk.items(), self.procfs)
            for proc in deleted:
                if self.known.get(proc.pid) is chunk[proc.pid]:  # not ended or re-read since
                    self.rejudge(proc, "deleted")
            for pid in leaderless:
                self.leader_check(pid)
            await asyncio.sleep(0)

    def rejudge(self, proc: Proc, source: str) -> None:
        """New facts of a known process: judged again (repeats fold in the engine); if the
        engine could not take them, the old facts stay and the next sweep finds it again."""
        old = self.known.get(proc.pid)
        self.known[proc.pid] = proc
        self.ctx.procs.add(proc)
        if not self.queued(ProcExec(time=time.time(), proc=proc, source=source)) and old:
            self.known[proc.pid] = old
            self.ctx.procs.add(old)

    def leader_left(self, pid: int) -> bool:
        """The exit event of a process's main thread: True when other threads may run on
        (checked again shortly: an exit_group takes them all within microseconds)."""
        if pid not in self.known:
            return False
        try:
            threads = len(os.listdir(f"{self.procfs}/{pid}/task"))
        except OSError:
            return False
        if threads <= 1:
            return False
        self.leader_check_soon(pid)
        return True

    def leader_check_soon(self, pid: int) -> None:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_later(LEADER_GRACE, self.leader_check, pid)

    def leader_check(self, pid: int) -> None:
        """A process whose leader exited: ended when no thread runs, else marked (once)."""
        proc = self.known.get(pid)
        if proc is None:
            self.leaderless.discard(pid)
            return
        if proctable.live_task(pid, self.procfs) is None:
            self.exited(pid)
            return
        self.leaderless.add(pid)
        if not proc.leader_exited:
            self.rejudge(dataclasses.replace(proc, leader_exited=True), "leader")

    def exited(self, pid: int) -> None:
        """Forget the process; what it had used by its last read is its tree's history, so
        the reaper's cutime rise by that much is not the reaper's load."""
        self.leaderless.discard(pid)
        proc = self.known.pop(pid, None)
        prev = self.cpu_prev.pop(pid, None)
        parent = self.parent.pop(pid, proc.ppid if proc is not None else 0)
        self.idle.discard(pid)
        counted = self.counted.pop(pid, 0.0)
        self.reaped.pop(pid, None)
        history = max(counted, prev[0] + prev[1]) if prev is not None else counted
        if proc is not None and history and parent in self.known:
            self.reaped[parent] = self.reaped.get(parent, 0.0) + history
        if proc is not None:
            self.queued(ProcExit(time=time.time(), pid=pid, start_time=proc.start_time))

    def sweep(self) -> None:
        """One whole sweep at once (see `steps`)."""
        for _ in self.steps():
            pass

    async def sweep_yielding(self) -> None:
        """One sweep that lets the loop (and the engine queue) run every SWEEP_CHUNK pids,
        so 20,000 new processes neither hold the loop nor overflow the queue."""
        for _ in self.steps():
            await asyncio.sleep(0)

    def steps(self) -> Iterator[None]:
        """Diff the pid set of procfs against what is known; read details of new pids only.
        After lost events, also re-read every known pid whose start time changed (a pid
        reused while its exit was lost); the CPU sample checks start times all the time.
        Yields every SWEEP_CHUNK pids read."""
        try:
            pids = {int(n) for n in os.listdir(self.procfs) if n.isdigit()}
        except OSError as exc:
            if exc.errno not in proctable.RESOURCE_ERRNOS:
                raise
            self.read_failed(0, exc)  # pid 0: the listing itself
            return
        self.unread.pop(0, None)
        self.unread = {p: n for p, n in self.unread.items() if p in pids}
        for pid in self.known.keys() - pids:
            self.exited(pid)
        if self.lost:
            self.lost = False
            for i, (pid, proc) in enumerate(list(self.known.items()), 1):
                st = proctable.read_stat(pid, self.procfs)
                if st is not None and not same_start(st[2], proc.start_time):
                    self.ctx.procs.forget(pid)
                    self.discover(pid, "sweep")
                if i % (SWEEP_CHUNK * 8) == 0:
                    yield
        self.imageless &= pids
        for i, pid in enumerate(sorted(pids - self.known.keys() - self.imageless), 1):
            if pid not in self.known:  # netlink may have reported it meanwhile
                self.forks.pop(pid, None)
                self.discover(pid, "sweep")
            if i % SWEEP_CHUNK == 0:
                yield
        if not self.unread and self.reason.startswith("cannot read /proc"):
            self.report(*self.state)  # every process read again

    # CPU
    def rotation(self) -> int:
        """Every how many samples an idle process is read: at most ROTATE, and often enough
        that one which starts burning is seen twice within the load sustain window."""
        load = self.ctx.config.load
        return max(1, min(ROTATE, int(load.sustain / max(load.sample_interval, 1e-3) / 2)))

    def quiet_limit(self) -> float:
        """Cores of host CPU that the processes read in a sample may leave unexplained
        while the idle ones are still not read: a quarter of the smallest load a tree can
        be reported for, so that no idle process can hide a load the detector would see."""
        load = self.ctx.config.load
        return QUIET_SHARE * min(load.margin, load.cpu_ceiling)

    def sample(self) -> None:
        """CPU seconds each process used since the last sample, plus what its reaped
        children used since their last read (a compile's short-lived workers; what a child
        had used by its last read is history, see `exited`), and the host's busy fraction.
        Processes that used none are left out of ProcCpu. No process is given more than
        cores x the time since its last read (more is a misread: clamped and counted).

        The cost does not grow with sleeping processes: one that used no CPU at its last
        read (an idle one) is read only while the host runs more task time than the busy
        processes (and busy kernel threads) account for (`quiet_limit`): then each sample
        reads another share of them, all within `rotation()` samples; what one used since
        its last read counts in this sample, so the CPU of every process is counted once."""
        now = time.time()
        span = now - self.sampled_at if self.sampled_at else 0.0
        cpu: dict[int, float] = {}
        reused: list[int] = []
        self.samples += 1
        host = read_host_cpu(self.procfs)
        self.cores = host.cores
        prev_host, self.host_prev = self.host_prev, host
        busy = [p for p in self.known if p not in self.idle]
        background = self.bg_busy & self.imageless
        read = self.read_cpu(busy, now, span, cpu, reused) + self.background(background)
        unexplained = (host.tasks - prev_host.tasks) / proctable.CLK_TCK - read if prev_host else 0
        if span and unexplained > self.quiet_limit() * span:
            # while the host runs more than the busy ones explain, each sample reads the next
            # share of the idle ones (and the other kernel threads): a burner among them is
            # read within rotation() samples
            turn = self.rotation()
            due = [p for p in self.idle if not (p + self.samples) % turn]
            self.read_cpu(due, now, span, cpu, reused)
            self.background(self.imageless - background)
        else:
            metrics.idle_samples_skipped.inc()
        for pid in reused:
            self.cpu_prev.pop(pid, None)
            self.parent.pop(pid, None)
            self.idle.discard(pid)
            self.counted.pop(pid, None)
            self.reaped.pop(pid, None)
            cpu.pop(pid, None)
            self.ctx.procs.forget(pid)
            self.discover(pid, "sweep")
        if span:
            procs = {pid: self.known[pid] for pid in cpu if pid in self.known}
            self.emit(ProcCpu(time=now, span=span, cpu=cpu, procs=procs))
        self.sampled_at = now
        if prev_host is not None and host.total > prev_host.total:
            share = (host.busy - prev_host.busy) / (host.total - prev_host.total)
            self.emit(HostCpu(time=now, busy=min(max(share, 0.0), 1.0), cores=host.cores))

    def background(self, pids: set[int]) -> float:
        """Task time these kernel threads or zombies ran since their last read: never
        judged, but part of the host's task time (kdamond scans every process's memory)."""
        total = 0.0
        for pid in pids:
            st = proctable.stat_times(pid, self.procfs)
            prev = self.bg_prev.pop(pid, None)
            self.bg_busy.discard(pid)
            if st is None:
                continue
            self.bg_prev[pid] = st[0]
            if prev is not None and st[0] > prev:
                total += st[0] - prev
                self.bg_busy.add(pid)
        if len(self.bg_prev) > 2 * len(self.imageless) + 64:
            self.bg_prev = {p: c for p, c in self.bg_prev.items() if p in self.imageless}
        return total

    def read_cpu(
        self, pids: list[int], now: float, span: float, cpu: dict[int, float], reused: list[int]
    ) -> float:
        """Read the CPU of these processes into `cpu` (and pids now another process's into
        `reused`); returns the task time they ran since their last read, children's
        included, in seconds."""
        total = 0.0
        for pid in pids:
            proc = self.known.get(pid)
            st = proctable.stat_times(pid, self.procfs) if proc is not None else None
            if st is None or proc is None:
                continue
            times = (st[0], st[1], now)
            if not same_start(st[2], proc.start_time):
                reused.append(pid)  # the pid now belongs to another process
                continue
            self.parent[pid] = st[3]
            prev = self.cpu_prev.get(pid)
            self.cpu_prev[pid] = times
            if prev is None:
                # born within the span (start times are only good to a second): all counts
                if span and proc.start_time >= self.sampled_at - START_CLOCK_SLACK:
                    prev = (0.0, 0.0, proc.start_time - START_CLOCK_SLACK)
                else:
                    # first read of one older than the last sample: what it used is not
                    # counted, but it explains host time (at most the span's worth of it)
                    total += min(times[0] + times[1], self.cores * span)
                    self.reaped.pop(pid, None)
                    continue
            if times[0] < prev[0] or times[1] < prev[1]:
                reused.append(pid)  # the pid now belongs to another process
                continue
            total += times[0] - prev[0] + times[1] - prev[1]
            children = times[1] - prev[1] - self.reaped.pop(pid, 0.0)
            if children < 0:  # ended children not reaped yet: their history comes later
                self.reaped[pid] = -children
            used = times[0] - prev[0] + max(children, 0.0)
            limit = self.cores * (now - prev[2]) + CLAMP_SLACK
            if used > limit:
                metrics.cpu_clamped.inc()
                used = limit
            if used > 0:
                self.idle.discard(pid)
                self.ctx.procs.touch(pid)  # socket owner scans read it first
                cpu[pid] = used
                self.counted[pid] = self.counted.get(pid, 0.0) + used
            else:
                self.idle.add(pid)
        return total
