"""`sentinel drill`: safe attack scenarios against the running agent; which control caught
each, how fast, and which sinks acknowledged it."""

from __future__ import annotations

import argparse
from typing import Any

from sentinel.cli.codes import EX_ERROR, EX_FINDINGS, EX_OK
from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "drill",
        help="rehearse: safe scenarios against the running agent, read back from its log",
        description="Run as the agent's user, with the agent's config (-c). Exit 0 only "
        "when every scenario that could run was caught.",
    )
    p.add_argument("-c", "--config", help="the running agent's TOML config")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="run only this scenario (repeatable; see --list)",
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait per scenario")
    p.add_argument("--with-load", action="store_true", help="add sustained CPU load meanwhile")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    p.add_argument("--report", metavar="FILE.md", help="also write the rows as Markdown")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys

    from sentinel.evidence import drill, scenarios

    cfg = config.load(args.config)
    every = scenarios.scenarios(cfg)
    known = [s.name for s in every]
    if args.list:
        for sc in every:
            print(f"{sc.name:32} {sc.control}")
        return EX_OK
    unknown = [n for n in args.only if n not in known]
    if unknown:
        print(
            f"sentinel drill: unknown scenario {unknown[0]!r} (known: {', '.join(known)})",
            file=sys.stderr,
        )
        return EX_ERROR
    if not os.path.exists(cfg.alert_log):
        print(
            f"sentinel drill: no alert log at {cfg.alert_log}; is the agent running with "
            f"{cfg.source}?",
            file=sys.stderr,
        )
        return EX_ERROR
    try:
        chosen = [s for s in every if not args.only or s.name in args.only]
        rows = drill.run(cfg, chosen, args.timeout, args.with_load)
    except drill.Skip as exc:
        print(f"sentinel drill: {exc}", file=sys.stderr)
        return EX_ERROR
    except KeyboardInterrupt:
        print(
            "sentinel drill: interrupted; its processes ended, its files restored", file=sys.stderr
        )
        return EX_FINDINGS
    if args.json:
        print(json.dumps([r.to_record() for r in rows], indent=2))
    else:
        _table(rows)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(markdown(cfg, rows, args.with_load))
    ran = [r for r in rows if r.status != "skipped"]
    return EX_OK if ran and all(r.status == "caught" for r in ran) else EX_FINDINGS


def _table(rows: list[Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="sentinel drill")
    for col in ("scenario", "expected control", "caught by", "latency", "acknowledged by"):
        table.add_column(col)
    for r in rows:
        caught = {"caught": r.caught_by, "skipped": f"skipped: {r.note}"}.get(r.status, "MISSED")
        style = {"caught": None, "skipped": "dim"}.get(r.status, "bold red")
        latency = "" if r.latency is None else f"{r.latency:.2f}s"
        table.add_row(
            r.scenario, r.control, escape(caught), latency, ", ".join(r.sinks), style=style
        )
    Console().print(table)


def markdown(cfg: config.Config, rows: list[Any], with_load: bool) -> str:
    """The documented drill: host, versions, time and one row per scenario."""
    import platform
    import socket
    import time

    from sentinel import __version__

    caught = sum(r.status == "caught" for r in rows)
    ran = sum(r.status != "skipped" for r in rows)
    lines = [
        "# Sentinel drill",
        "",
        f"- Host: {cfg.agent.hostname or socket.gethostname()}",
        f"- Time: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        f"- Sentinel {__version__}, Python {platform.python_version()}, "
        f"kernel {platform.release()}",
        f"- Agent config: {cfg.source}",
        f"- Load added: {'yes' if with_load else 'no'}",
        f"- Result: {caught} of {ran} scenarios caught",
        "",
        "| scenario | expected control | caught by | latency | acknowledged by |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        caught_by = (
            r.caught_by
            if r.status == "caught"
            else (f"skipped: {r.note}" if r.status == "skipped" else "**MISSED**")
        )
        latency = "" if r.latency is None else f"{r.latency:.2f} s"
        cells = [r.scenario, r.control, caught_by, latency, ", ".join(r.sinks)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
