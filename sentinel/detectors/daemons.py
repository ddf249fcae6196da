"""New long-lived daemons: processes that detached from their parent and stayed."""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from sentinel.core import proctable
from sentinel.core.context import Context
from sentinel.core.events import Event, ProcExec, ProcExit, Tick
from sentinel.core.model import Category, Finding, Proc, Severity, same_start
from sentinel.detectors import Detector, register
from sentinel.ops import metrics
from sentinel.rules import cmdline

INIT_PID = 1
MAX_TRACKED = 8192
MAX_EXITS = 4096
START_SLACK = 1.0  # seconds: a process this much older than the agent counts as existing


@register
class DaemonDetector(Detector):
    """Tracks new processes until they exit; one whose parent died first and that lives past
    `daemons.min_age` without a tty, a runbook job or an allow pattern is reported on Tick.

    A process seen first with pid 1 as parent counts as detached too (a double fork that
    never exec'd is only seen by the sweep, after it was re-parented).
    """

    name = "daemons"
    events = (ProcExec, ProcExit, Tick)
    state_name = "daemons"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.started = time.time()
        self.allow = [re.compile(p) for p in ctx.config.daemons.allow]
        self.attached: OrderedDict[int, Proc] = OrderedDict()  # alive, parent alive
        self.children: dict[int, set[int]] = {}  # parent pid -> attached pids
        self.detached: OrderedDict[int, Proc] = OrderedDict()  # waiting for min_age
        self.exits: OrderedDict[int, float] = OrderedDict()  # recently exited pid -> time
        self.saved_at = 0.0  # when the last run saved its state: it saw what started before
        self.pending: dict[int, float] = {}  # pid -> start time: what it still had to judge
        self.changes = 0  # changes to attached and detached, so an unchanged state is not saved
        self.saved_changes = -1

    def handle(self, event: Event) -> Iterable[Finding]:
        if isinstance(event, ProcExec):
            self.seen(event.proc)
        elif isinstance(event, ProcExit):
            self.exited(event)
        elif isinstance(event, Tick):
            yield from self.due(event.time)

    def load_state(self, data: bytes | None) -> None:
        """After a restart on the same boot, only what the last run had seen is exempt."""
        state = json.loads(data) if data else {}
        if abs(state.get("boot_time", 0.0) - proctable.boot_time(self.ctx.procfs)) > 1.0:
            return  # a first start, or the box rebooted: what runs now started without us
        self.saved_at = float(state["saved_at"])
        self.pending = {int(pid): float(start) for pid, start in state["pending"]}

    def save_state(self) -> Callable[[], bytes] | None:
        """What is still to judge, or None if nothing changed since the last save: the saved
        state still says what this run had seen (at the cost of one pass over the tracked
        processes, 10,000 sleeping ones included, only when something changed)."""
        if self.changes == self.saved_changes:
            return None
        self.saved_changes = self.changes
        pending = [
            [p.pid, p.start_time] for t in (self.attached, self.detached) for p in t.values()
        ]
        state = {"boot_time": proctable.boot_time(self.ctx.procfs), "saved_at": time.time()}
        return lambda: json.dumps({**state, "pending": pending}).encode()

    def existed(self, proc: Proc) -> bool:
        """Started before this agent and seen (and judged) by it or by the run before it."""
        if proc.start_time >= self.started - START_SLACK:
            return False
        if not self.saved_at:
            return True
        if proc.start_time >= self.saved_at - START_SLACK:
            return False  # started while the agent was down
        return not same_start(self.pending.get(proc.pid, -1.0), proc.start_time)

    def seen(self, proc: Proc) -> None:
        if self.existed(proc) or (not proc.exe and not proc.cmdline) or self.ctx.own.owns(proc):
            return  # existed before the agent, a kernel thread, or the agent's own
        if self.explained(proc):
            self.forget(proc.pid)
            return
        if proc.pid in self.detached:  # a later exec of a process already detached
            self.detached[proc.pid] = proc
            return
        self.forget(proc.pid)
        parent_gone = proc.ppid in self.exits and self.exits[proc.ppid] >= proc.start_time - 1
        if proc.ppid == INIT_PID or parent_gone:
            self.track(self.detached, proc)
        else:
            self.track(self.attached, proc)
            self.children.setdefault(proc.ppid, set()).add(proc.pid)

    def track(self, table: OrderedDict[int, Proc], proc: Proc) -> None:
        self.changes += 1
        table[proc.pid] = proc
        if len(table) > MAX_TRACKED:
            _, old = table.popitem(last=False)
            self.unlink(old)
            metrics.events_dropped.labels(f"detector.{self.name}").inc()

    def unlink(self, proc: Proc) -> None:
        siblings = self.children.get(proc.ppid)
        if siblings is not None:
            siblings.discard(proc.pid)
            if not siblings:
                del self.children[proc.ppid]

    def forget(self, pid: int) -> None:
        proc = self.attached.pop(pid, None) or self.detached.pop(pid, None)
        if proc is not None:
            self.changes += 1
            self.unlink(proc)

    def exited(self, ev: ProcExit) -> None:
        for table in (self.attached, self.detached):
            proc = table.get(ev.pid)
            if proc is not None and same_start(proc.start_time, ev.start_time):
                self.forget(ev.pid)
        for pid in self.children.pop(ev.pid, set()):
            proc = self.attached.pop(pid, None)
            if proc is not None:
                self.track(self.detached, proc)
        self.exits[ev.pid] = ev.time
        self.exits.move_to_end(ev.pid)
        if len(self.exits) > MAX_EXITS:
            self.exits.popitem(last=False)

    def explained(self, proc: Proc) -> bool:
        """Declared by a runbook job or matched by a daemons.allow pattern."""
        if self.ctx.runbook.explains(proc, self.ctx.procs):
            return True
        fields = (proc.exe, proc.name, proc.argv0)
        return any(p.search(f) for p in self.allow for f in fields if f)

    def due(self, now: float) -> Iterable[Finding]:
        min_age = self.ctx.config.daemons.min_age
        for pid, proc in list(self.detached.items()):
            age = now - proc.start_time
            if age < min_age:
                continue
            del self.detached[pid]
            self.changes += 1
            if proc.tty or self.explained(proc):
                continue
            where = cmdline.exec_location(proc)
            yield Finding(
                rule="daemon.new_detached",
                category=Category.DAEMON,
                severity=Severity.MEDIUM if where else Severity.LOW,
                summary=f"new detached daemon {proc.name} (pid {proc.pid}) alive {age:.0f}s",
                detector=self.name,
                process=proc,
                evidence={
                    "age_seconds": round(age, 1),
                    "exe": proc.exe,
                    "exec_location": where[0] if where else None,
                },
            )
