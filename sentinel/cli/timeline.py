"""`sentinel timeline`: what a process tree did, in order, from the recorder and the alert log."""

from __future__ import annotations

import argparse
from typing import Any

from sentinel.cli.codes import EX_ERROR, EX_OK
from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("timeline", help="what a process tree did, in order")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--incident", metavar="ID", help="the tree of a finding (its id)")
    who.add_argument("--pid", type=int, help="this process and its descendants")
    who.add_argument("--user", metavar="U", help="every process of this user and its descendants")
    p.add_argument("--since", default="1h", help="how far back (30s, 10m, 2h, 1d; default 1h)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("-c", "--config", help="TOML config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys
    import time

    from sentinel.core.model import rfc3339
    from sentinel.evidence import recorder, timeline

    cfg = config.load(args.config)
    try:
        span = timeline.parse_span(args.since)
    except ValueError as exc:
        print(f"sentinel: --since: {exc}", file=sys.stderr)
        return EX_ERROR
    since, pid, until = time.time() - span, args.pid, None
    if args.incident:
        rec = timeline.incident(cfg.alert_log, args.incident)
        if rec is None or not rec.get("process"):
            print(
                f"sentinel: no finding {args.incident!r} about a process in {cfg.alert_log}",
                file=sys.stderr,
            )
            return EX_ERROR
        pid = int(rec["process"]["pid"])
        since = min(since, timeline.record_time(rec) - span)
    db = recorder.db_path(cfg.agent.state_dir)
    if not os.path.exists(db):
        print(f"sentinel: no recorder store at {db} (is [evidence] recorder on?)", file=sys.stderr)
        return EX_ERROR
    entries = timeline.build(db, cfg.alert_log, since, pid=pid, user=args.user, until=until)
    if args.json:
        print(json.dumps([e.to_record() for e in entries], indent=2, default=str))
        return EX_OK
    from rich.console import Console
    from rich.markup import escape as markup
    from rich.table import Table

    from sentinel.core.safetext import escape

    title = f"pid {pid}" if pid is not None else f"user {args.user}"
    table = Table(title=f"timeline of {title} since {rfc3339(since)}")
    for col in ("time", "pid", "process", "event", "detail"):
        table.add_column(col, overflow="fold")
    for e in entries:
        style = "bold red" if e.kind == "finding" else None
        table.add_row(
            rfc3339(e.time)[11:],
            "" if e.pid is None else str(e.pid),
            "  " * e.depth + ("└ " if e.depth else "") + markup(escape(e.process)),
            e.kind,
            markup(escape(e.detail)),
            style=style,
        )
    Console().print(table)
    return EX_OK
