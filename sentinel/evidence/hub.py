"""What the engine hands to evidence: every event to the recorder, every finding its context.

One `Hub` per engine build. `handle` turns events into recorder rows and keeps the last
RECENT rows of each pid, and who exec'd whom, in memory; `annotate` adds the last RECENT
rows of a finding's process tree to its evidence (`evidence.recent`) and marks drill
findings; on each Tick the alert log writes a checkpoint that is due, which is passed on
to the sinks that carry checkpoints off the box.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from sentinel.core.events import (
    CollectorState,
    Event,
    FileAccess,
    FileChange,
    NetConn,
    ProcExec,
    ProcExit,
    Tick,
)
from sentinel.core.model import Finding
from sentinel.evidence import drillmark
from sentinel.evidence.recorder import Recorder, Row, cap_argv, db_path
from sentinel.ops import metrics
from sentinel.rules import redact
from sentinel.sinks.jsonl import JsonlSink

if TYPE_CHECKING:
    from collections.abc import Callable

    from sentinel.core.context import Context
    from sentinel.sinks import Sink

log = logging.getLogger("sentinel.evidence")

RECENT = 20  # recorder events of a finding's process tree carried in its evidence
ADDED_LINES = 20  # lines added to a file kept per recorded change
RECENT_ARGV_CHARS = 512  # argv kept per event there: 20 of them stay well inside a record
MAX_PIDS = 16384  # pids with a ring, and parents with children, kept in memory
MAX_CHILDREN = 1024  # children remembered per parent (a fork storm keeps the newest)
MAX_SUBTREE = 256  # pids gathered for one finding
FILES = -1  # the ring of file changes, which carry no pid
ROOTS = frozenset({0, 1, 2})  # init and kthreadd: a tree starts below them
LOSS_HOLD = 600.0  # seconds the recorder stays degraded after it last lost rows


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
        if event.added:  # as the persistence finding's excerpt shows them: no secret
            data["added"] = redact.excerpt(event.added, ADDED_LINES)
        return Row(event.time, "file", None, None, None, data)
    if isinstance(event, FileAccess):
        pid = event.pids[0] if event.pids else None
        return Row(event.time, "access", pid, None, None, {"path": event.path, "how": event.kind})
    return None


def compact(row: Row) -> dict[str, Any]:
    """A row for `evidence.recent`, its argv cut shorter than the recorder keeps it and
    redacted (a sibling's command line can carry a key or a token into the alert log)."""
    rec = row.to_record()
    if "argv" in rec:
        out, left = [], RECENT_ARGV_CHARS
        for arg in rec["argv"]:
            if left <= 0:
                break
            out.append(redact.redact_text(arg[:left]))
            left -= len(arg)
        rec["argv"] = out
    return rec


class Hub:
    def __init__(
        self,
        ctx: Context,
        sinks: list[Sink],
        previous: Hub | None = None,
        emit: Callable[[Event], object] | None = None,
    ) -> None:
        self.ctx = ctx
        self.emit = emit
        self.losses = (0, 0)  # the recorder's (lost, evicted) counts last reported
        self.lost_at = 0.0  # when the recorder last lost rows (monotonic)
        ev = ctx.config.evidence
        self.db = db_path(ctx.config.agent.state_dir)
        self.wanted = ev.recorder
        self.recorder: Recorder | None = None
        if previous is not None:
            if ev.recorder and previous.recorder is not None and previous.recorder.path == self.db:
                self.recorder, previous.recorder = previous.recorder, None
                self.losses, self.lost_at = previous.losses, previous.lost_at
            previous.close()
        # per pid, the last RECENT rows (FILES: file changes, which carry no pid); lists,
        # not deques: most pids have one row, and a deque alone takes 760 bytes
        self.rings: OrderedDict[int, list[Row]] = previous.rings if previous else OrderedDict()
        # parent pid -> its children seen exec'ing (an ordered set), newest parents last
        self.children: dict[int, dict[int, None]] = previous.children if previous else {}
        self.logs = [s for s in sinks if isinstance(s, JsonlSink)]
        carriers = [s for s in sinks if not isinstance(s, JsonlSink)]
        for sink in self.logs:
            sink.chain.listeners[:] = [c.checkpoint for c in carriers]
        self.drills = drillmark.Registry(ctx.config.agent.state_dir, ctx.procfs)

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
            self._report_losses(now)
            return
        if not self.wanted:
            return  # recorder off: no store and no rings (findings carry no `recent`)
        row = row_of(event)
        if row is None:
            return
        if self.recorder is None:  # opened on first use: building an engine writes nothing
            ev = self.ctx.config.evidence
            self.recorder = Recorder(self.db, ev.recorder_max_bytes, ev.recorder_max_days)
        self.recorder.put(row)
        self._ring(row)

    def _report_losses(self, now: float) -> None:
        """Rows the recorder lost (a full queue) or cut short of max_days (the byte budget)
        degrade it, as a medium integrity finding, until LOSS_HOLD passes without more."""
        rec = self.recorder
        if rec is None or self.emit is None:
            return
        losses = (rec.lost, rec.evicted)
        if losses != self.losses:
            lost, evicted = (a - b for a, b in zip(losses, self.losses, strict=True))
            self.losses, self.lost_at = losses, now
            days = self.ctx.config.evidence.recorder_max_days
            why = [f"{lost} events not recorded (queue full)"] if lost else []
            if evicted:
                why.append(f"{evicted} events younger than {days:g} days evicted for space")
            self._state(False, "; ".join(why), lost=lost, evicted=evicted, severity="medium")
        elif self.lost_at and now - self.lost_at > LOSS_HOLD:
            self.lost_at = 0.0
            self._state(True)

    def _state(self, ok: bool, reason: str = "", **detail: object) -> None:
        assert self.emit is not None
        self.emit(
            CollectorState(
                time=time.time(), collector="recorder", ok=ok, reason=reason, detail=dict(detail)
            )
        )

    def _ring(self, row: Row) -> None:
        key = FILES if row.pid is None else row.pid
        if row.kind == "exec" and row.pid is not None and row.ppid is not None:
            kids = self.children.pop(row.ppid, None) or {}
            kids[row.pid] = None
            if len(kids) > MAX_CHILDREN:
                kids.pop(next(iter(kids)))
            self.children[row.ppid] = kids  # re-inserted: the newest parent is last
            if len(self.children) > MAX_PIDS:
                self.children.pop(next(iter(self.children)))
        ring = self.rings.get(key)
        if ring is None:
            ring = self.rings[key] = []
            if len(self.rings) > MAX_PIDS:
                self.rings.popitem(last=False)
        else:
            self.rings.move_to_end(key)
        ring.append(row)
        if len(ring) > RECENT:
            del ring[0]

    def _subtree(self, root: int) -> list[int]:
        """root and its descendants seen exec'ing, breadth first, at most MAX_SUBTREE."""
        out, todo = [root], [root]
        while todo and len(out) < MAX_SUBTREE:
            for kid in self.children.get(todo.pop(0), ()):
                if kid not in out:
                    out.append(kid)
                    todo.append(kid)
        return out[:MAX_SUBTREE]

    def recent(self, finding: Finding) -> list[dict[str, Any]]:
        """The last RECENT recorded events of the finding's process tree: its parent's
        subtree (the process, its siblings, say the download before it, and descendants),
        or of recent file changes for a finding about a file."""
        if finding.process is not None:
            p = finding.process
            root = p.pid if p.ppid in ROOTS else p.ppid
            pids = {*self._subtree(root), p.pid}
            rows = [r for pid in pids for r in self.rings.get(pid, ())]
        elif finding.file is not None:
            rows = list(self.rings.get(FILES, ()))
        else:
            return []
        rows.sort(key=lambda r: r.time)
        return [compact(r) for r in rows[-RECENT:]]

    def annotate(self, finding: Finding) -> None:
        """Add `evidence.recent` and the drill mark before sinks see the finding."""
        try:
            if self.wanted:
                finding.evidence.setdefault("recent", self.recent(finding))
            if self.drills.matches(finding):
                finding.evidence["drill"] = True
                if not finding.summary.startswith(drillmark.TAG):
                    finding.summary = f"{drillmark.TAG} {finding.summary}"
        except Exception:
            log.exception("evidence annotation failed")

    def flush(self, timeout: float) -> bool:
        """Wait until the recorder has written what it was handed (True without a recorder)."""
        recorder = self.recorder
        return recorder is None or recorder.flush(timeout)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
