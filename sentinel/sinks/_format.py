"""Alert text shared by the chat and Alertmanager sinks: what, where, which process, evidence.

Everything here works on the alert record (the dict of `Finding.to_record()`), which is
also what the disk spool keeps. Process names, command lines and evidence come from the
watched box and are untrusted: renderers put them in code spans or plain-text runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ELLIPSIS = "…"
BARS = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 48
TEST_RULE = "sentinel.test_alert"
GRAVE = "\u02cb"  # stands in for a backtick inside code spans
# facts whose values come from the watched box rather than from Sentinel
_UNTRUSTED = {"Process", "User", "Executable", "File", "Connection"}
ICONS = {"critical": "🚨", "high": "🔴", "medium": "🟠", "low": "🟡", "info": "🔵"}


def cut(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1] + ELLIPSIS


def fit(text: str, limit: int, wrap: Callable[[str], str]) -> str:
    """`wrap(cut(text, n))` for the largest n whose result is at most `limit` characters."""
    n = limit
    while True:
        out = wrap(cut(text, n))
        if len(out) <= limit or n <= 0:
            return out if len(out) <= limit else ""
        n -= max(1, len(out) - limit)


def code(text: str) -> str:
    """An inline code span; backticks inside are replaced so the span cannot be closed early."""
    return "`" + (text.replace("`", GRAVE) or " ") + "`"


def sparkline(values: Iterable[Any], points: int = SPARK_POINTS) -> str:
    """Eight-level bars for the last `points` finite numbers; non-numbers are skipped."""
    nums = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ][-points:]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    if hi == lo:
        return BARS[3] * len(nums)
    return "".join(BARS[min(7, int((v - lo) / (hi - lo) * 8))] for v in nums)


def _num(v: float) -> str:
    return f"{v:.3g}"


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, default=str, separators=(", ", ": "))


@dataclass
class View:
    """The parts of an alert every platform shows, each already cut to `limit`."""

    title: str
    severity: str
    summary: str
    test: bool
    facts: list[tuple[str, str]] = field(default_factory=list)
    cmdline: str = ""
    ancestors: str = ""
    evidence: list[tuple[str, str]] = field(default_factory=list)
    history: str = ""
    footer: str = ""


def view(record: dict[str, Any], limit: int = 1000) -> View:
    """Build the shared view of an alert record; every field at most `limit` characters."""
    sev = str(record.get("severity", "info"))
    test = record.get("rule") == TEST_RULE
    summary = str(record.get("summary", ""))
    label = "TEST" if test else sev.upper()
    title = f"{ICONS.get(sev, '')} [{label}] {summary}".strip()
    facts = [
        ("Host", str(record.get("host", ""))),
        ("Severity", sev),
        ("Category", str(record.get("category", ""))),
        ("Rule", str(record.get("rule", ""))),
        ("Time", str(record.get("time", ""))),
    ]
    out = View(title=cut(title, limit), severity=sev, summary=cut(summary, limit), test=test)
    proc = record.get("process") or None
    if isinstance(proc, dict):
        facts.append(("Process", f"pid {proc.get('pid')} {proc.get('name', '')}".strip()))
        facts.append(("User", str(proc.get("user", ""))))
        if proc.get("exe"):
            facts.append(("Executable", str(proc["exe"])))
        out.cmdline = cut(" ".join(str(a) for a in proc.get("cmdline") or []), limit)
        chain = [
            f"{a.get('name', '?')}({a.get('pid', '?')})"
            for a in proc.get("ancestors") or []
            if isinstance(a, dict)
        ]
        out.ancestors = cut(" ← ".join(chain), limit)
    f = record.get("file") or None
    if isinstance(f, dict):
        facts.append(("File", f"{f.get('path', '')} ({f.get('size', '?')} bytes)"))
        if f.get("sha256"):
            facts.append(("SHA-256", str(f["sha256"])))
    conn = record.get("connection") or None
    if isinstance(conn, dict):
        where = f"{conn.get('raddr', '')}:{conn.get('rport', '')} {conn.get('proto', '')}"
        if conn.get("domain"):
            where += f" ({conn['domain']})"
        facts.append(("Connection", where.strip()))
    out.facts = [(k, cut(v, limit)) for k, v in facts if v]
    evidence = record.get("evidence") or {}
    if isinstance(evidence, dict):
        out.evidence = [
            (cut(str(k), 100), cut(_value(v), limit)) for k, v in evidence.items() if k != "history"
        ]
        history = evidence.get("history")
        if isinstance(history, list):
            nums = [v for v in history if isinstance(v, int | float) and not isinstance(v, bool)]
            bars = sparkline(nums)
            if bars:
                tail = [float(v) for v in nums if math.isfinite(v)][-SPARK_POINTS:]
                out.history = (
                    f"{bars}  min {_num(min(tail))} max {_num(max(tail))} now {_num(tail[-1])}"
                )
    out.footer = cut(f"Sentinel · finding {record.get('id', '')}", limit)
    return out


def plain_text(record: dict[str, Any], limit: int, field_limit: int = 600) -> str:
    """The whole alert as readable lines (Markdown-safe code spans), at most `limit` chars."""
    v = view(record, field_limit)
    lines = [v.title]
    lines += [f"{k}: {code(val) if k in _UNTRUSTED else val}" for k, val in v.facts]
    if v.cmdline:
        lines.append(f"Command line: {code(v.cmdline)}")
    if v.ancestors:
        lines.append(f"Ancestors: {code(v.ancestors)}")
    if v.evidence:
        lines.append("Evidence:")
        lines += [f"- {k}: {code(val)}" for k, val in v.evidence]
    if v.history:
        lines.append(f"Load, last samples: {v.history}")
    lines.append(v.footer)
    return cut("\n".join(lines), limit)


def untrusted(name: str) -> bool:
    """True for facts whose value comes from the watched box (render as code or plain)."""
    return name in _UNTRUSTED
