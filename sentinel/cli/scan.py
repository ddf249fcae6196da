"""`sentinel scan`: YARA, text-rule and indicator scan of file trees and running processes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from sentinel.core import config
from sentinel.core.model import Finding, Severity
from sentinel.core.safetext import escape
from sentinel.rules import intel
from sentinel.rules.catalogue import CatalogueError
from sentinel.rules.yara import TIMEOUT_RULE, RulesError, load_rules
from sentinel.scan.scanner import CACHE_FILE, Scanner, ScanOptions, ScanStats

if TYPE_CHECKING:
    from rich.console import Console

# rich and the process detector are imported where used: every `sentinel` command imports
# this module to build its parser, and `scan --json PATH` needs neither.

from sentinel.cli.codes import EX_CONFIG, EX_ERROR, EX_FINDINGS, EX_OK

PROGRESS_AFTER = 1.0  # seconds before a progress display appears
SHOWN_SKIPS = 20  # skip lines printed on a terminal (JSON lists them all)
_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": ""}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scan",
        help="scan files and running processes for miners, tunnels and wallets",
        description="Scan file trees and/or running processes with Sentinel's YARA rules and "
        "indicator lists. Exit 0 clean, 1 findings at or above scan.fail_severity, "
        "2 runtime error, 78 configuration or rule error.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or directories to scan")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory of *.yar rules (repeatable)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--pids",
        action="store_true",
        help="also scan running processes (default as root with no PATH)",
    )
    mode.add_argument(
        "--no-files", action="store_true", help="scan running processes only, no PATH"
    )
    p.add_argument("-c", "--config", help="TOML config (default /etc/sentinel/sentinel.toml)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--procfs", default="/proc", help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


class _LiveStatus:
    """Progress callback: a live status line on stderr once a scan has run a while."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.start = time.monotonic()
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, stats: ScanStats) -> None:
        if self.progress is None:
            if time.monotonic() - self.start < PROGRESS_AFTER:
                return
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("scanning", total=None)
        done = stats.files_scanned + stats.files_cached
        self.progress.update(
            self.task,
            description=f"scanning: {done}/{stats.files_seen} files, "
            f"{stats.bytes_scanned >> 20} MiB read, {stats.processes} processes, "
            f"{len(stats.skipped)} skipped",
        )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _subject(f: Finding) -> str:
    """What a finding is about, control characters escaped (names come from the box)."""
    if f.process is not None:
        return escape(f"pid {f.process.pid} {f.process.name}")
    return escape(f.file.path if f.file else f.subject)


def _print_report(console: Console, findings: list[Finding], stats: dict[str, Any]) -> None:
    """A table on a terminal; one tab-separated line per finding otherwise (for grep)."""
    from rich.markup import escape as markup
    from rich.table import Table

    say = console.print
    if not findings:
        say("no findings")
    elif console.is_terminal:
        table = Table(title=f"{len(findings)} findings")
        for col in ("severity", "category", "rule", "subject", "summary"):
            table.add_column(col, overflow="fold")
        for f in findings:
            sev = str(f.severity)
            styled = f"[{_STYLES[sev]}]{sev}[/]" if _STYLES[sev] else sev
            table.add_row(
                styled, str(f.category), f.rule, markup(_subject(f)), markup(escape(f.summary))
            )
        say(table)
    else:
        for f in findings:
            fields = (str(f.severity), str(f.category), f.rule, _subject(f), escape(f.summary))
            line = "\t".join(fields)
            say(line, markup=False, highlight=False, soft_wrap=True)
    say(
        f"{len(findings)} findings, {stats['files_scanned']} files scanned, "
        f"{stats['files_cached']} from cache, {stats['bytes_scanned'] >> 20} MiB read, "
        f"{stats['processes']} processes, {len(stats['skipped'])} skipped, "
        f"{stats['duration_s']:.1f}s (cache {stats['cache']})",
        soft_wrap=True,
    )
    for reason, count in sorted(stats["skip_counts"].items()):
        say(f"  skipped {count} x {reason}")
    for skip in stats["skipped"][:SHOWN_SKIPS]:
        detail = f" ({skip['detail']})" if skip["detail"] else ""
        line = escape(f"  {skip['reason']}: {skip['path']}{detail}")
        say(line, markup=False, highlight=False, soft_wrap=True)
    if len(stats["skipped"]) > SHOWN_SKIPS:
        say(f"  ... {len(stats['skipped']) - SHOWN_SKIPS} more (see --json)")


def run(args: argparse.Namespace) -> int:
    """Run the scan; returns the exit code."""
    files = not args.no_files
    pids = args.pids or args.no_files or (not args.paths and os.geteuid() == 0)
    if args.no_files and args.paths:
        print("sentinel scan: --no-files takes no PATH", file=sys.stderr)
        return EX_ERROR
    if files and not args.paths and not pids:
        print("sentinel scan: give a PATH, or --pids to scan running processes", file=sys.stderr)
        return EX_ERROR
    cfg = config.load(args.config)  # ConfigError is reported by the caller (exit 78)
    try:
        fail = Severity.parse(cfg.scan.fail_severity)
        user_dirs = [*cfg.rule_dirs, *args.rules]
        rules = load_rules(user_dirs)
        indicators = intel.load(user_dirs)
        from sentinel.core.context import Context

        ctx = Context(cfg, indicators)
        catalogue = ctx.catalogue  # its text rules judge each line of the files
    except (RulesError, intel.IntelError, CatalogueError) as exc:
        print(f"sentinel: rule error: {exc}", file=sys.stderr)
        return EX_CONFIG
    options = ScanOptions(
        max_file_size=cfg.scan.max_file_size,
        threads=cfg.scan.threads,
        timeout=cfg.scan.timeout,
        exclude=cfg.scan.exclude,
        cache_path=None if args.no_cache else os.path.join(cfg.agent.state_dir, CACHE_FILE),
        own_paths=[cfg.agent.state_dir, cfg.alert_log, str(intel.builtin_dir())],
    )
    progress = _LiveStatus() if sys.stderr.isatty() else None
    try:
        scanner = Scanner(rules, options, progress, catalogue)
        try:
            if pids:
                from sentinel.detectors.process import ProcessDetector

                detector = ProcessDetector(ctx)
                scanner.scan_processes(detector.check, args.procfs)
            if files:
                scanner.scan_paths(args.paths)
        finally:
            findings, stats = scanner.finish()
            if progress:
                progress.stop()
    except Exception as exc:  # a runtime failure must not look like "findings" (exit 1)
        print(f"sentinel scan: error: {type(exc).__name__}: {escape(exc)}", file=sys.stderr)
        return EX_ERROR
    record = stats.to_record(findings)
    if args.json:
        doc = {"findings": [f.to_record() for f in findings], "stats": record}
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        from rich.console import Console

        _print_report(Console(), findings, record)
    if any(f.severity >= fail or f.rule == TIMEOUT_RULE for f in findings):
        return EX_FINDINGS  # a file the rules did not finish on is never clean
    if any(s.reason == "not-found" for s in stats.skipped):
        return EX_ERROR
    return EX_OK
