"""`sentinel rules list|test`: show the rule catalogue, run every rule's embedded tests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sentinel.cli.codes import EX_CONFIG, EX_FINDINGS, EX_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("rules", help="list the rule catalogue or run its embedded tests")
    cmds = p.add_subparsers(dest="rules_command", required=True)
    ls = cmds.add_parser("list", help="every rule: id, category, severity, event, title")
    ls.add_argument("--json", action="store_true", help="a JSON list with all metadata")
    ls.add_argument("-c", "--config", help="TOML config ([rules] dirs, disable, exceptions)")
    ls.set_defaults(func=run_list)
    t = cmds.add_parser(
        "test",
        help="run every rule's embedded tests (exit 0 all pass, 1 a test failed, 78 load error)",
    )
    t.add_argument("dir", nargs="?", help="a rule directory: test only its rules")
    t.add_argument("-c", "--config", help="TOML config ([rules] dirs, disable, exceptions)")
    t.set_defaults(func=run_test)


def _catalogue(args: argparse.Namespace, extra: list[str] | None = None) -> Any:
    """The catalogue for the config, plus extra rule directories; None after a load error."""
    from sentinel.core import config
    from sentinel.rules import intel, loader
    from sentinel.rules.catalogue import CatalogueError

    cfg = config.load(args.config) if args.config else config.Config()
    dirs = [*cfg.rules.dirs, *(extra or [])]
    try:
        lists = intel.load([*cfg.scan.rules, *dirs])
        return loader.load(lists, dirs, cfg.rules.disable, cfg.rules.exceptions, source=cfg.source)
    except (CatalogueError, intel.IntelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def run_list(args: argparse.Namespace) -> int:
    cat = _catalogue(args)
    if cat is None:
        return EX_CONFIG
    rules = sorted(cat.all_rules(), key=lambda r: (r.id, r.event))
    if args.json:
        print(json.dumps([r.metadata() for r in rules], indent=2))
        return EX_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "category", "severity", "event", "title", "from")
    for r in rules:
        origin = f"{r.where} (replaces {r.replaces})" if r.replaces else r.where
        table.add_row(r.id, r.category.value, r.severity.name.lower(), r.event, r.title, origin)
    Console(width=240).print(table)
    return EX_OK


def run_test(args: argparse.Namespace) -> int:
    from sentinel.rules import selftest

    extra = [args.dir] if args.dir else []
    cat = _catalogue(args, extra)
    if cat is None:
        return EX_CONFIG
    rules = cat.all_rules()
    if args.dir:
        root = Path(args.dir).resolve()
        rules = [r for r in rules if Path(r.file).resolve().parent == root]
    count, failures = selftest.run(cat, rules)
    for f in failures:
        print(f"FAIL {f}")
    print(f"{len(rules)} rules, {count} samples, {len(failures)} failed")
    return EX_FINDINGS if failures else EX_OK
