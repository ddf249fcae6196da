"""Followed logs: appended lines judged by the text rules (miner strings) and for wallet
addresses, graded like wallets in files (rules/filecontext); each finding names the log
and the line."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from sentinel.core.context import Context
from sentinel.core.events import Event, LogLines
from sentinel.core.model import Category, FileFacts, Finding
from sentinel.detectors import Detector, register
from sentinel.rules import filecontext, wallets
from sentinel.rules.fields import text
from sentinel.rules.redact import redact

WALLET_RULE = "wallet.log_line"
EXCERPT = 200  # characters of the line kept (secrets redacted)
PER_WINDOW = 5  # findings of one rule in one log per WINDOW, each line named
WINDOW = 600.0  # seconds; past PER_WINDOW, a pass yields one rollup with the count
MAX_KEYS = 4096  # (log, rule) pairs remembered


def _where(path: str, line: int | None) -> str:
    return f"{path} line {line}" if line is not None else path


@register
class LogsDetector(Detector):
    """Text rules and wallet checks on lines appended to followed logs."""

    name = "logs"
    events = (LogLines,)
    threadable = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # (log, rule) -> (start of its window, findings in it): lines the watched process
        # writes to a followed log cannot turn into one finding each
        self.counts: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def handle(self, event: Event) -> Iterable[Finding]:
        if not isinstance(event, LogLines):
            return
        held: dict[str, tuple[Finding, int]] = {}  # rule -> (its latest finding, lines held)
        for f in self.judge(event):
            if self.admit(event.path, f.rule, event.time):
                yield f
            else:
                held[f.rule] = (f, held.get(f.rule, (f, 0))[1] + 1)
        for f, n in held.values():
            f.summary = (
                f"{f.summary} (and {n - 1} more lines of it held back)" if n > 1 else f.summary
            )
            f.evidence["held_back"] = n
            f.subject = f"file:{event.path}:{f.rule}:rollup"
            yield f  # one per rule and pass: how many more lines matched

    def admit(self, path: str, rule: str, now: float) -> bool:
        """Whether a finding of `rule` in this log is still within its window's share."""
        key = (path, rule)
        start, n = self.counts.get(key, (now, 0))
        if now - start > WINDOW:
            start, n = now, 0
        self.counts[key] = (start, n + 1)
        self.counts.move_to_end(key)
        while len(self.counts) > MAX_KEYS:
            self.counts.popitem(last=False)
        return n < PER_WINDOW

    def judge(self, event: LogLines) -> Iterable[Finding]:
        place = filecontext.package_place(event.path)
        for line, body in event.lines:
            evidence = {"log": event.path, "line": line, "excerpt": redact(body[:EXCERPT])}
            facts = FileFacts(event.path, None, event.size)
            best: dict[str, Finding] = {}
            for m in text.matches(self.ctx.catalogue, body):
                if m.rule.category is Category.WALLET:
                    continue  # judged below, by kind, key and place
                f = Finding(
                    rule=m.rule.id,
                    category=m.rule.category,
                    severity=m.severity,
                    summary=f"{m.summary} in log {_where(event.path, line)}",
                    detector=self.name,
                    file=facts,
                    evidence={**m.evidence, **evidence},
                )
                if m.rule.id not in best or f.severity > best[m.rule.id].severity:
                    best[m.rule.id] = f
            yield from best.values()
            found = self.wallets(body)
            if found:
                yield Finding(
                    rule=WALLET_RULE,
                    category=Category.WALLET,
                    severity=filecontext.wallet_severity(found, place),
                    summary=f"{found[0]['kind']} wallet address in log {_where(event.path, line)}",
                    detector=self.name,
                    file=facts,
                    evidence={"wallets": found, **evidence},
                    subject=f"file:{event.path}:{found[0]['address']}",  # one per address
                )

    @staticmethod
    def wallets(body: str) -> list[dict[str, object]]:
        """Checksum-valid addresses in one line, each with whether a wallet key precedes it."""
        out: list[dict[str, object]] = []
        for kind, address in wallets.find_wallets(body):
            at = body.index(address)
            out.append({"kind": kind, "address": address, "keyed": wallets.keyed(body[:at])})
        return out
