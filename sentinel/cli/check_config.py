"""`sentinel check-config`: validate the config, the rules and the indicator lists."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sentinel.cli.codes import EX_CONFIG, EX_OK
from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate the config, rules and lists")
    p.add_argument("-c", "--config", help="TOML config to check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sentinel.engine import Engine
    from sentinel.rules import selftest

    cfg = config.load(args.config)
    engine = Engine(cfg)  # builds every plugin and compiles the rules and lists
    _, failures = selftest.run(engine.ctx.catalogue)
    for f in failures:
        print(f"error: embedded rule test failed: {f}", file=sys.stderr)
    if failures:
        return EX_CONFIG
    print(f"{cfg.source}: OK")
    return EX_OK
