"""What the engine hands to evidence: every event to the recorder, every finding its context.

One `Hub` per engine build. `handle` turns events into recorder rows and keeps the last
RECENT rows of each process tree in memory; `annotate` adds them to a finding's evidence
(`evidence.recent`) and marks drill findings; `tick` lets the alert log write a checkpoint
that is due and passes checkpoints on to sinks that carry them off the box.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from sentinel.core.events import Event, FileAccess, FileChange, NetConn, ProcExec, ProcExit, Tick
from sentinel.core.model import Finding
from sentinel.evidence import drillmark
from sentinel.evidence.recorder import Recorder, Row, cap_argv, db_path
from sentinel.ops import metrics
from sentinel.sinks.jsonl import JsonlSink

if TYPE_CHECKING:
    from sentinel.core.context import Context
    from sentinel.sinks import Sink

log = logging.getLogger("sentinel.evidence")

RECENT = 20  # recorder events of a finding's process tree carried in its evidence
RECENT_ARGV_CHARS = 512  # argv kept per event there: 20 of them stay well inside a record
MAX_TREES = 4096
MAX_PIDS = 65536
FILES_TREE = -1  # the ring of file changes, which carry no pid
ROOTS = frozenset({0, 1, 2})  # init and kthreadd: a tree starts below them


def row_of(event: Event) -> Row | None:
    """The recorder row for an event, or None for events it does not keep."""
    if isinstance(event, ProcExec):
        p = event.proc
        data = {
            "exe": p.exe,
            "name": p.name,
            "argv": cap_argv(p.cmdline),
            "cwd": p.cwd,
            "start": p.start_time,
            "source": event.source,
        }
        return Row(event.time, "exec", p.pid, p.ppid, p.user, data)
    if isinstance(event, ProcExit):
        return Row(event.time, "exit", event.pid, None, None, {"start": event.start_time})
    if isinstance(event, NetConn):
        c, p = event.conn, event.proc
        kind = "listen" if event.state.upper() == "LISTEN" else "connect"
        data = {
            "laddr": c.laddr,
            "raddr": c.raddr,
            "rport": c.rport,
            "proto": c.proto,
            "domain": c.domain,
            "state": event.state,
        }
        if p is not None:
            data["name"] = p.name
        return Row(
            event.time,
            kind,
            p.pid if p else None,
            p.ppid if p else None,
            p.user if p else None,
            data,
        )
    if isinstance(event, FileChange):
        data = {"path": event.path, "change": event.kind, "role": event.role}
        if event.added:
            data["added"] = [line[:512] for line in event.added[:20]]
        return Row(event.time, "file", None, None, None, data)
    if isinstance(event, FileAccess):
        pid = event.pids[0] if event.pids else None
        return Row(event.time, "access", pid, None, None, {"path": event.path, "how": event.kind})
    return None


def compact(row: Row) -> dict[str, Any]:
    """A row for `evidence.recent`, its argv cut shorter than the recorder keeps it."""
    rec = row.to_record()
    if "argv" in rec:
        out, left = [], RECENT_ARGV_CHARS
        for arg in rec["argv"]:
            if left <= 0:
                break
            out.append(arg[:left])
            left -= len(arg)
        rec["argv"] = out
    return rec


class Hub:
    def __init__(self, ctx: Context, sinks: list[Sink], previous: Hub | None = None) -> None:
        self.ctx = ctx
        ev = ctx.config.evidence
        self.db = db_path(ctx.config.agent.state_dir)
        self.wanted = ev.recorder
        self.recorder: Recorder | None = None
        if previous is not None:
            if ev.recorder and previous.recorder is not None and previous.recorder.path == self.db:
                self.recorder, previous.recorder = previous.recorder, None
            previous.close()
        self.tree: dict[int, int] = previous.tree if previous else {}
        self.rings: OrderedDict[int, deque[Row]] = previous.rings if previous else OrderedDict()
        self.logs = [s for s in sinks if isinstance(s, JsonlSink)]
        carriers = [s for s in sinks if not isinstance(s, JsonlSink)]
        for sink in self.logs:
            sink.chain.listeners[:] = [c.checkpoint for c in carriers]
        self.drills = drillmark.Registry(ctx.config.agent.state_dir)

    def handle(self, event: Event) -> None:
        """Record one event (cheap: a row built and queued, a ring appended); never raises."""
        try:
            self._handle(event)
        except Exception:
            log.exception("evidence failed on %s", type(event).__name__)
            metrics.errors.labels("evidence").inc()

    def _handle(self, event: Event) -> None:
        if isinstance(event, Tick):
            now = time.monotonic()
            for sink in self.logs:
                sink.tick(now)
            return
        row = row_of(event)
        if row is None:
            return
        if self.wanted:
            if self.recorder is None:  # opened on first use: building an engine writes nothing
                ev = self.ctx.config.evidence
                self.recorder = Recorder(self.db, ev.recorder_max_bytes, ev.recorder_max_days)
            self.recorder.put(row)
        self._ring(row)

    def _tree_of(self, pid: int | None, ppid: int | None) -> int:
        if pid is None:
            return FILES_TREE
        tree = self.tree.get(pid)
        if tree is None or ppid is not None:
            tree = pid if ppid is None or ppid in ROOTS else self.tree.get(ppid, ppid)
            if len(self.tree) >= MAX_PIDS:
                self.tree.pop(next(iter(self.tree)))
            self.tree[pid] = tree
        return tree

    def _ring(self, row: Row) -> None:
        tree = self._tree_of(row.pid, row.ppid if row.kind == "exec" else None)
        ring = self.rings.get(tree)
        if ring is None:
            ring = self.rings[tree] = deque(maxlen=RECENT)
            if len(self.rings) > MAX_TREES:
                self.rings.popitem(last=False)
        else:
            self.rings.move_to_end(tree)
        ring.append(row)

    def recent(self, finding: Finding) -> list[dict[str, Any]]:
        """The last RECENT recorded events of the finding's process tree."""
        if finding.process is not None:
            p = finding.process
            tree = self.tree.get(p.pid)
            if tree is None:
                known = [a.pid for a in p.ancestors if a.pid not in ROOTS]
                tree = known[-1] if known else p.pid
        elif finding.file is not None:
            tree = FILES_TREE
        else:
            return []
        return [compact(r) for r in self.rings.get(tree, ())]

    def annotate(self, finding: Finding) -> None:
        """Add `evidence.recent` and the drill mark before sinks see the finding."""
        try:
            finding.evidence.setdefault("recent", self.recent(finding))
            if self.drills.matches(finding):
                finding.evidence["drill"] = True
                if not finding.summary.startswith(drillmark.TAG):
                    finding.summary = f"{drillmark.TAG} {finding.summary}"
        except Exception:
            log.exception("evidence annotation failed")

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
