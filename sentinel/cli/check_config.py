"""`sentinel check-config`: validate the config, the rules and the indicator lists."""

from __future__ import annotations

import argparse
from typing import Any

from sentinel.cli.codes import EX_OK
from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate the config, rules and lists")
    p.add_argument("-c", "--config", help="TOML config to check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sentinel.engine import Engine

    cfg = config.load(args.config)
    Engine(cfg)  # builds every plugin and compiles the rules and lists
    print(f"{cfg.source}: OK")
    return EX_OK
