"""Dedup and incident folding: which findings are repeats, and which are still active."""

from __future__ import annotations

from collections import defaultdict

from sentinel.core.config import EngineConfig
from sentinel.core.events import ProcExit
from sentinel.core.model import Finding, Severity, same_start

MAX_RECENT = 50000  # remembered (rule, subject) pairs before old ones are expired


class Incidents:
    """Remembers what was sent: repeats within `dedup_window` and descendants or sibling
    workers of an alerted process (within `incident_window`) are folded into one alert,
    unless they are more severe than it (a low finding cannot shelter a high one)."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.recent: dict[tuple[str, str], tuple[float, str]] = {}
        self.groups: dict[tuple[str, ...], tuple[float, Severity]] = {}
        self.alerted_pids: dict[str, dict[int, tuple[float, Severity]]] = defaultdict(dict)
        self.active: dict[tuple[str, str], Finding] = {}
        # active alerts about a process, by pid (start times told apart on lookup), so an
        # exit does not scan every active alert
        self.by_pid: dict[int, set[tuple[str, str]]] = defaultdict(set)

    def suppress_reason(self, f: Finding, now: float) -> str:
        """'dedup' or 'incident' when the finding folds into one already sent, else ''."""
        window = self.cfg.dedup_window
        fingerprint = f"{f.severity}|{f.summary}"
        prev = self.recent.get(f.dedup_key)
        if prev and now - prev[0] < window and prev[1] == fingerprint:
            return "dedup"
        self.recent[f.dedup_key] = (now, fingerprint)
        if f.process is not None:
            pids = self.alerted_pids[f.rule]
            sev = f.severity

            def covers(seen: tuple[float, Severity] | None) -> bool:
                return seen is not None and now - seen[0] < window and seen[1] >= sev

            if any(covers(pids.get(a.pid)) for a in f.process.ancestors):
                pids[f.process.pid] = (now, sev)
                return "incident"
            # siblings: same rule, parent, program and first argument (a miner's workers)
            group = (
                f.rule,
                str(f.process.ppid),
                f.process.exe or f.process.name,
                *f.process.cmdline[1:2],
            )
            last = self.groups.get(group)
            recent_group = (
                last is not None and now - last[0] < self.cfg.incident_window and last[1] >= sev
            )
            self.groups[group] = (now, max(sev, last[1]) if recent_group and last else sev)
            if recent_group and f.process.pid not in pids:
                pids[f.process.pid] = (now, sev)
                return "incident"
            pids[f.process.pid] = (now, sev)
        if len(self.recent) > MAX_RECENT:
            self.expire(now)
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
        self.groups = {
            k: v for k, v in self.groups.items() if now - v[0] < self.cfg.incident_window
        }
        for k, f in list(self.active.items()):
            if f.process is None and now - f.time >= window:
                del self.active[k]
        for rule, pids in self.alerted_pids.items():
            self.alerted_pids[rule] = {p: t for p, t in pids.items() if now - t[0] < window}

    def exited(self, ev: ProcExit) -> list[tuple[str, str]]:
        """The process ended: its descendants are no longer folded; its alerts to resolve."""
        for pids in self.alerted_pids.values():
            pids.pop(ev.pid, None)
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
