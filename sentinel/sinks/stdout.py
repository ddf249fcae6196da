"""One readable line per finding on stdout."""

from __future__ import annotations

import sys

from sentinel.core.model import Finding, rfc3339
from sentinel.core.safetext import escape
from sentinel.sinks import Sink, register

LINE_CAP = 64 * 1024


def describe(finding: Finding) -> str:
    """`time severity category rule: summary [pid N name | path | raddr:port]`, one line:
    everything that came from the box has its control characters escaped."""
    where = []
    if finding.process is not None:
        p = finding.process
        where.append(f"pid={p.pid} {p.name}")
    if finding.file is not None:
        where.append(finding.file.path)
    if finding.connection is not None:
        c = finding.connection
        where.append(f"{c.domain or c.raddr}:{c.rport}")
    tail = f" [{'; '.join(where)}]" if where else ""
    head = f"{rfc3339(finding.time)} {str(finding.severity).upper():8} {finding.category:11}"
    line = f"{head} {escape(finding.rule)}: {escape(finding.summary)}{escape(tail)}"
    return line if len(line) <= LINE_CAP else line[: LINE_CAP - 13] + " [truncated]"


@register
class StdoutSink(Sink):
    type = "stdout"
    notifies = False

    def submit(self, finding: Finding) -> None:
        sys.stdout.write(describe(finding) + "\n")
        sys.stdout.flush()
