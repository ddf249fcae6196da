"""Collector health: who reported, who runs degraded, and what /healthz answers."""

from __future__ import annotations

from sentinel.core.events import CollectorState
from sentinel.core.model import CMDLINE_CAP, Category, Finding, Proc, Severity

DROP_REPORT_EVERY = 10.0  # seconds between two findings about dropped events
DROP_HEALTH_HOLD = 30.0  # /healthz stays degraded this long after the last drop


def is_off(st: CollectorState) -> bool:
    """A collector that reported an info-level state runs as well as this box allows."""
    return Severity.parse(st.detail.get("severity", Severity.LOW)) == Severity.INFO


def label(st: CollectorState) -> str:
    """ok, off (an info-level limit of this box, such as no GPU) or degraded."""
    if st.ok:
        return "ok"
    return f"{'off' if is_off(st) else 'degraded'} ({st.reason})"


def finding(ev: CollectorState) -> Finding:
    """The integrity finding for a collector that is off or degraded."""
    kind = "off" if is_off(ev) else "degraded"
    return Finding(
        rule=f"integrity.collector_{kind}",
        category=Category.INTEGRITY,
        severity=Severity.parse(ev.detail.get("severity", Severity.LOW)),
        summary=f"collector {ev.collector} {kind}: {ev.reason}",
        detector="engine",
        evidence={"collector": ev.collector, "reason": ev.reason, **ev.detail},
        subject=f"collector:{ev.collector}:{ev.reason}",
        time=ev.time,
    )


class Health:
    """The latest state of each collector the engine runs."""

    def __init__(self) -> None:
        self.states: dict[str, CollectorState] = {}

    def update(self, ev: CollectorState) -> bool:
        """Record a state; True when it is the collector's first report."""
        first = ev.collector not in self.states
        self.states[ev.collector] = ev
        return first

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if n not in self.states]

    def summary(self) -> str:
        return ", ".join(f"{n}={label(st)}" for n, st in sorted(self.states.items()))

    def check(self, ready: bool, names: list[str]) -> tuple[bool, str]:
        """(True, '') once every collector runs or is off by design; else False and why."""
        if not ready:
            return False, f"starting: waiting for {', '.join(self.missing(names))}"
        down = [
            f"{n}: {s.reason}" for n, s in sorted(self.states.items()) if not s.ok and not is_off(s)
        ]
        return (not down, "; ".join(down))


class Drops:
    """Events the engine queue had no room for: counted, reported at most once in 10 s as
    an integrity finding, and a degraded /healthz until they stop."""

    def __init__(self) -> None:
        self.total = 0
        self.pending: dict[str, int] = {}  # event type -> drops not yet reported
        self.last_drop = float("-inf")
        self.last_report = float("-inf")

    def add(self, kind: str, now: float) -> None:
        self.total += 1
        self.pending[kind] = self.pending.get(kind, 0) + 1
        self.last_drop = now

    def finding(self, now: float) -> Finding | None:
        """The finding for drops not yet reported, if one is due."""
        if not self.pending or now - self.last_report < DROP_REPORT_EVERY:
            return None
        counts, self.pending = self.pending, {}
        self.last_report = now
        n = sum(counts.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        return Finding(
            rule="integrity.events_dropped",
            category=Category.INTEGRITY,
            severity=Severity.MEDIUM,
            summary=f"event queue full: {n} events dropped ({kinds}); {self.total} in all",
            detector="engine",
            evidence={"dropped": counts, "dropped_total": self.total},
            subject=f"drops:{now:.0f}",
            time=now,
        )

    def check(self, now: float) -> tuple[bool, str]:
        if now - self.last_drop < DROP_HEALTH_HOLD:
            return False, f"event queue full: {self.total} events dropped"
        return True, ""


def unjudged(proc: Proc, size: int) -> Finding:
    """A command line too large to judge whole while others of its kind wait: it is judged
    on its first CMDLINE_CAP characters, and that is a finding of its own."""
    return Finding(
        rule="integrity.cmdline_unjudged",
        category=Category.INTEGRITY,
        severity=Severity.MEDIUM,
        summary=f"command line of {size} characters judged on its first {CMDLINE_CAP} only: "
        f"{proc.name} (pid {proc.pid})",
        detector="engine",
        process=proc,
        evidence={"cmdline_chars": size},
    )
