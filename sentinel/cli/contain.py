"""`sentinel contain` and `sentinel release`: the kill switch on demand, and its undo.

Both print a table of what they did and exit 0 only when every step succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from typing import Any

from sentinel.cli.codes import EX_ERROR, EX_FINDINGS, EX_OK
from sentinel.core import config


def _selectors(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="TOML config (default /etc/sentinel/sentinel.toml)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--incident", metavar="ID", help="an alert id from the alert log")
    g.add_argument("--pid", type=int, help="a process and its descendants")
    g.add_argument("--user", help="every process of this user")
    g.add_argument("--cgroup", metavar="PATH", help="every process in this cgroup")
    g.add_argument("--unit", metavar="NAME", help="every process of this systemd unit")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("contain", help="freeze, snapshot, cut off, kill and quarantine now")
    _selectors(p)
    p.add_argument("--no-kill", action="store_true", help="freeze and snapshot, do not kill")
    p.add_argument("--keep-network", action="store_true", help="do not cut egress")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    p.set_defaults(func=cmd_contain)
    r = sub.add_parser("release", help="thaw a containment and remove its egress rules")
    _selectors(r)
    r.set_defaults(func=cmd_release)


def _find_record(path: str, incident: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if incident in line:
                    rec = json.loads(line)
                    if rec.get("id") == incident:
                        return rec
    except (OSError, ValueError):
        return None
    return None


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    """The steps as aligned columns; details name files and processes from the box, so
    their control characters are escaped."""
    from sentinel.core.safetext import escape

    head = ("ACTION", "RESULT", "PIDS", "MS", "DETAIL")
    rows = [(a, b, c, d, escape(e)) for a, b, c, d, e in rows]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])


def _pids(pids: list[int]) -> str:
    text = ",".join(map(str, pids[:8]))
    return text + (f",+{len(pids) - 8}" if len(pids) > 8 else "") if pids else "-"


def cmd_contain(args: argparse.Namespace) -> int:
    from sentinel.core.model import Severity
    from sentinel.response.policy import Plan
    from sentinel.response.sequence import Sequence, record
    from sentinel.response.targets import Scope, identity

    cfg = config.load(args.config)
    actions = ["freeze", "forensics", "egress", "kill", "quarantine", "revoke"]
    if args.no_kill:
        actions.remove("kill")
    if args.keep_network:
        actions.remove("egress")
    incident = args.incident or f"manual-{uuid.uuid4().hex[:12]}"
    plan = Plan(incident, actions, args.dry_run or cfg.response.mode == "dry-run", Severity.HIGH)
    if args.incident:
        rec = _find_record(cfg.alert_log, args.incident)
        if rec is None or not rec.get("process"):
            print(f"sentinel: no alert with a process has id {args.incident} in {cfg.alert_log}")
            return EX_ERROR
        plan.severity = Severity.parse(rec["severity"])
        plan.records.append(rec)
        args.pid = rec["process"]["pid"]
        if rec.get("connection"):
            plan.destinations.append(rec["connection"]["raddr"])
        if rec.get("file"):
            plan.files.append(rec["file"]["path"])
    if args.pid is not None:
        ident = identity(args.pid)
        if ident is None:
            print(f"sentinel: no process {args.pid} (or it is a kernel thread)")
            return EX_ERROR
        if args.incident and not _same(ident.start_time, plan.records[0]["process"]["start_time"]):
            print(f"sentinel: pid {args.pid} is no longer the process of incident {incident}")
            return EX_ERROR
        plan.roots.append(ident)
    else:
        for kind in ("user", "cgroup", "unit"):
            if getattr(args, kind):
                plan.whole_scope = Scope(kind, getattr(args, kind))
    steps = Sequence(cfg).run(plan)
    _log(cfg, [record(s, plan) for s in steps])
    print(f"incident {incident}{' (dry-run)' if plan.dry_run else ''}")
    rows = []
    for s in steps:
        detail = s.detail or s.method
        if s.skipped:
            detail += f" (left {len(s.skipped)}: {_first_reason(s.skipped)})"
        rows.append((s.action, s.result, _pids(s.pids), f"{s.duration * 1000:.1f}", detail))
    print_table(rows)
    return EX_OK if all(s.ok for s in steps) else EX_FINDINGS


def _first_reason(skipped: dict[int, str]) -> str:
    pid, why = next(iter(skipped.items()))
    return f"{pid} {why}"


def _same(start: float, recorded: str) -> bool:
    from datetime import datetime

    from sentinel.core.model import same_start

    return same_start(start, datetime.fromisoformat(recorded.replace("Z", "+00:00")).timestamp())


def _log(cfg: config.Config, findings: list[Any]) -> None:
    """Append the response records to the alert log, as the agent would."""
    from sentinel.core.config import SinkConfig
    from sentinel.core.context import Context
    from sentinel.rules import intel
    from sentinel.sinks.jsonl import JsonlSink

    sink = JsonlSink(SinkConfig(type="jsonl", name="log"), Context(cfg, intel.load()))
    for f in findings:
        sink.submit(f)
    if sink.fd >= 0:
        os.close(sink.fd)


def cmd_release(args: argparse.Namespace) -> int:
    from sentinel.response import release

    cfg = config.load(args.config)
    selector = {k: getattr(args, k) for k in ("incident", "pid", "user", "cgroup", "unit")}
    results = release.release(cfg, {k: v for k, v in selector.items() if v is not None})
    if not results:
        print("sentinel: no recorded containment matches")
        return EX_FINDINGS
    print_table([(a, "done" if ok else "failed", _pids(p), "-", d) for a, ok, p, d in results])
    return EX_OK if all(ok for _, ok, _, _ in results) else EX_FINDINGS
