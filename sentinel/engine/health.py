"""Collector health: who reported, who runs degraded, and what /healthz answers."""

from __future__ import annotations

from sentinel.core.events import CollectorState
from sentinel.core.model import Category, Finding, Severity


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
