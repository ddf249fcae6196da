"""Dedup and incident folding: which findings are repeats, and which are still active.

Folding merges notifications, never findings: a finding folded into an incident is still
logged (the JSONL log and stdout get every finding, marked with the incident it joined),
only chat and Alertmanager stay quiet. A finding folds into an incident only when

- the incident's first notification went out less than `incident_window` ago,
- it has the same evidence class (`evidence_class`: the rule, the executable, and the
  evidence values that name what was seen),
- it is no more severe than the incident (a low finding cannot shelter a high one), and
- its process descends from a process of the incident, or is a sibling worker of one (same
  parent, program and first argument).

A decoy alert on a long-lived wrapper therefore folds nothing its children do with another
executable, and whatever it folds is still in the log.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sentinel.core.config import EngineConfig
from sentinel.core.events import ProcExit
from sentinel.core.model import Finding, rfc3339, same_start

MAX_RECENT = 50000  # remembered (rule, subject) pairs before old ones are expired
VOLATILE = frozenset({"since", "recent"})  # textual evidence that is time, not identity


def evidence_class(f: Finding) -> tuple[Any, ...]:
    """What a finding saw, for folding: its rule, the executable (deleted or not), and each
    evidence value that is text or a list of texts (URLs, pools, names, domains, places),
    by key; numbers measure (age, cores, counts) and are left out, as is `since`."""
    names: list[tuple[str, Any]] = []
    for key, value in sorted(f.evidence.items()):
        if key in VOLATILE:
            continue
        if isinstance(value, str):
            names.append((key, value))
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            names.append((key, tuple(value)))
    p = f.process
    return (f.rule, p.exe if p else "", p.exe_deleted if p else False, *names)


@dataclass
class Incident:
    """One notification sent and the findings folded into it since."""

    root: Finding
    kind: tuple[Any, ...]
    opened: float
    pid: int  # the notified finding's process
    count: int = 0

    def covers(
        self, f: Finding, pid: int, kind: tuple[Any, ...], now: float, window: float
    ) -> bool:
        """Whether the finding about process `pid` folds here; a changed finding about the
        incident's own process is news, not a fold."""
        return (
            now - self.opened < window
            and kind == self.kind
            and f.severity <= self.root.severity
            and pid != self.pid
        )

    def fold(self, f: Finding) -> None:
        """Mark the finding as folded here; the incident keeps the count and latest one."""
        self.count += 1
        f.evidence["folded_into"] = {"incident": self.root.id, "count": self.count}
        latest = {
            "id": f.id,
            "time": rfc3339(f.time),
            "pid": f.process.pid if f.process else None,
            "summary": f.summary,
            "severity": str(f.severity),
        }
        # a new dict, not an update: sinks may hold the root's record being written
        self.root.evidence = {
            **self.root.evidence,
            "incident": {"folded": self.count, "latest": latest},
        }


class Incidents:
    """Remembers what was sent: exact repeats within `dedup_window` are dropped; findings
    that fold into an incident (see the module doc) are logged but not notified."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        # dedup key -> (when, what was seen: severity, summary, file hash, evidence class)
        self.recent: dict[tuple[str, str], tuple[float, tuple[Any, ...]]] = {}
        self.groups: dict[tuple[str, ...], Incident] = {}
        # per pid: the incident each rule's finding about it opened or joined
        self.of_pid: dict[int, dict[str, Incident]] = defaultdict(dict)
        self.active: dict[tuple[str, str], Finding] = {}
        # active alerts about a process, by pid (start times told apart on lookup), so an
        # exit does not scan every active alert
        self.by_pid: dict[int, set[tuple[str, str]]] = defaultdict(set)

    def suppress_reason(self, f: Finding, now: float) -> str:
        """'dedup' (drop: an exact repeat), 'incident' (log only: folded, and marked so) or
        '' (send it; it opens an incident of its own)."""
        # what was seen, not only how it reads: a file rewritten with another wallet, or a
        # log line with other text, is news under the same summary
        kind = evidence_class(f)
        fingerprint = (f.severity, f.summary, f.file.sha256 if f.file is not None else "", kind)
        prev = self.recent.get(f.dedup_key)
        if prev and now - prev[0] < self.cfg.dedup_window and prev[1] == fingerprint:
            return "dedup"
        self.recent[f.dedup_key] = (now, fingerprint)
        if len(self.recent) > MAX_RECENT or len(self.of_pid) > MAX_RECENT:
            self.expire(now)
        if f.process is None:
            return ""
        window = self.cfg.incident_window
        # siblings: same rule, parent, program and first argument (a miner's workers)
        group = (f.rule, str(f.process.ppid), f.process.exe or f.process.name)
        group += tuple(f.process.cmdline[1:2])
        candidates = [self.of_pid.get(a.pid, {}).get(f.rule) for a in f.process.ancestors]
        candidates.append(self.groups.get(group))
        for inc in candidates:
            if inc is not None and inc.covers(f, f.process.pid, kind, now, window):
                inc.fold(f)
                self.of_pid[f.process.pid][f.rule] = inc
                return "incident"
        inc = Incident(f, kind, now, f.process.pid)
        self.of_pid[f.process.pid][f.rule] = inc
        self.groups[group] = inc
        return ""

    def sent(self, f: Finding) -> None:
        old = self.active.get(f.dedup_key)
        if old is not None:
            self._unindex(f.dedup_key, old)
        self.active[f.dedup_key] = f
        if f.process is not None:
            self.by_pid[f.process.pid].add(f.dedup_key)

    def _unindex(self, key: tuple[str, str], f: Finding) -> None:
        if f.process is not None:
            keys = self.by_pid.get(f.process.pid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_pid[f.process.pid]

    def expire(self, now: float) -> None:
        window = self.cfg.dedup_window
        self.recent = {k: v for k, v in self.recent.items() if now - v[0] < window}
        fold = self.cfg.incident_window
        self.groups = {k: v for k, v in self.groups.items() if now - v.opened < fold}
        for k, f in list(self.active.items()):
            if f.process is None and now - f.time >= window:
                del self.active[k]
        for pid, rules in list(self.of_pid.items()):
            kept = {r: inc for r, inc in rules.items() if now - inc.opened < fold}
            if kept:
                self.of_pid[pid] = kept
            else:
                del self.of_pid[pid]

    def exited(self, ev: ProcExit) -> list[tuple[str, str]]:
        """The process ended: its descendants are no longer folded; its alerts to resolve."""
        self.of_pid.pop(ev.pid, None)
        return [
            key
            for key in self.by_pid.get(ev.pid, ())
            if (f := self.active.get(key)) is not None
            and (p := f.process) is not None
            and p.pid == ev.pid
            and same_start(p.start_time, ev.start_time)
        ]

    def end(self, key: tuple[str, str]) -> Finding | None:
        """Forget an active alert; the finding that raised it, if it was active."""
        finding = self.active.pop(key, None)
        if finding is not None:
            self.recent.pop(key, None)
            self._unindex(key, finding)
        return finding
