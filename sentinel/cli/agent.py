"""`sentinel agent`: the real-time daemon."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("agent", help="run the real-time agent")
    p.add_argument("-c", "--config", help="TOML config (default /etc/sentinel/sentinel.toml)")
    p.add_argument("--procfs", default="/proc", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from sentinel.engine import Engine
    from sentinel.engine.state import check_state_dir
    from sentinel.ops import loopwatch
    from sentinel.ops.limits import set_open_files

    cfg = config.load(args.config)
    check_state_dir(cfg.agent.state_dir)
    set_open_files(cfg.agent.max_open_files)
    if args.procfs != "/proc":
        logging.getLogger("sentinel").info("reading processes from %s", args.procfs)
    engine = Engine(cfg, procfs=args.procfs, config_path=args.config)
    with asyncio.Runner(loop_factory=loopwatch.new_loop) as runner:
        return runner.run(engine.run())
