"""Prometheus Alertmanager: POST /api/v2/alerts, re-sent while firing, resolved at the end.

Labels: alertname and rule (the rule id), host, severity, category, and subject (what
the finding is about, e.g. `pid:123:...`), so two miners on one box are two alerts.
A firing alert is re-sent every `resend_interval` with `endsAt` four intervals ahead:
if the agent dies, Alertmanager resolves it by itself. It is resolved (`endsAt` now)
when the engine calls `resolve` (the process exited, or the detector said the
condition ended); an alert about no process (a dropped file, say) is resolved
`resolve_after` seconds after it fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from sentinel.core.config import ConfigError, SinkConfig
from sentinel.core.context import Context
from sentinel.core.model import Finding, rfc3339
from sentinel.sinks import register
from sentinel.sinks._format import cut, plain_text
from sentinel.sinks._http.delivery import HttpSink, Outbound, to_json

API_PATH = "/api/v2/alerts"
LEASE_INTERVALS = 4  # endsAt of a firing alert, in resend intervals
DESCRIPTION_LIMIT = 4000


@dataclass
class Firing:
    record: dict[str, Any]
    subject: str
    since: float
    sent: float
    has_process: bool


def labels(record: dict[str, Any], subject: str) -> dict[str, str]:
    rule = str(record.get("rule", ""))
    return {
        "alertname": rule,
        "rule": rule,
        "host": str(record.get("host", "")),
        "severity": str(record.get("severity", "")),
        "category": str(record.get("category", "")),
        "subject": subject or "host",
    }


@register
class AlertmanagerSink(HttpSink):
    type = "alertmanager"

    def __init__(self, cfg: SinkConfig, ctx: Context) -> None:
        super().__init__(cfg, ctx)
        if cfg.resend_interval <= 0 or cfg.resolve_after < 0:
            raise ConfigError(
                f"{ctx.config.source}: sinks '{self.name}': 'resend_interval' must be > 0 "
                "and 'resolve_after' >= 0"
            )
        self.firing: dict[tuple[str, str], Firing] = {}
        self.resender: asyncio.Task[None] | None = None
        self.last_checkpoint = ""

    def endpoint(self) -> str:
        url = self.cfg.url.rstrip("/")
        return url if url.endswith(API_PATH) else url + API_PATH

    def submit(self, finding: Finding) -> None:
        now = time.time()
        record = self.record(finding)
        old = self.firing.get(finding.dedup_key)
        if old is not None and labels(old.record, old.subject) != labels(record, finding.subject):
            self._resolved(old.record, old.subject, now)  # e.g. medium became high
        self.firing[finding.dedup_key] = Firing(
            record, finding.subject, now, now, finding.process is not None
        )
        self.enqueue(Outbound("firing", record, finding.subject))

    def resolve(self, finding: Finding) -> None:
        old = self.firing.pop(finding.dedup_key, None)
        if old is not None:
            self._resolved(old.record, old.subject, time.time())
        else:
            self._resolved(self.record(finding), finding.subject, time.time())

    def _resolved(self, record: dict[str, Any], subject: str, when: float) -> None:
        self.enqueue(Outbound("resolved", record, subject, extra={"ends_at": when}))

    def resend_due(self, now: float) -> None:
        """Re-send firing alerts whose interval passed; resolve those that time out."""
        queued = {(m.record.get("rule"), m.subject) for m in self.pending}
        for key, f in list(self.firing.items()):
            if (
                not f.has_process
                and not f.record["evidence"].get("always_firing")  # the agent's heartbeat
                and self.cfg.resolve_after
                and now - f.since >= (self.cfg.resolve_after)
            ):
                del self.firing[key]
                self._resolved(f.record, f.subject, now)
            elif now - f.sent >= self.cfg.resend_interval and key not in queued:
                f.sent = now
                self.enqueue(Outbound("firing", f.record, f.subject))

    async def _resend_loop(self) -> None:
        periods = [self.cfg.resend_interval, self.cfg.resolve_after or self.cfg.resend_interval]
        tick = max(0.05, min(periods) / 4)
        while True:
            await asyncio.sleep(tick)
            self.resend_due(time.time())

    async def start(self) -> None:
        await super().start()
        self.resender = asyncio.create_task(self._resend_loop(), name=f"resend:{self.name}")

    async def close(self) -> None:
        if self.resender is not None:
            self.resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.resender
            self.resender = None
        await super().close()

    def checkpoint(self, record: dict[str, Any]) -> None:
        """The newest signed log checkpoint rides on every alert as an annotation."""
        self.last_checkpoint = to_json(record).decode()

    def body(self, msg: Outbound) -> bytes:
        """Rendered per attempt: a firing alert's `endsAt` is always ahead of now."""
        record = msg.record
        if msg.kind == "resolved":
            ends = float(msg.extra.get("ends_at", time.time()))
        else:
            ends = time.time() + LEASE_INTERVALS * self.cfg.resend_interval
        alert: dict[str, Any] = {
            "labels": labels(record, msg.subject),
            "annotations": {
                "summary": cut(str(record.get("summary", "")), 1000),
                "description": plain_text(record, DESCRIPTION_LIMIT),
                "finding_id": str(record.get("id", "")),
            },
            "startsAt": record.get("time") or rfc3339(msg.created),
            "endsAt": rfc3339(ends),
        }
        if self.last_checkpoint:
            alert["annotations"]["log_checkpoint"] = self.last_checkpoint
        return to_json([alert])
