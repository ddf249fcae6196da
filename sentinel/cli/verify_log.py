"""`sentinel verify-log`: check the alert log's hash chain and checkpoint signatures."""

from __future__ import annotations

import argparse
from typing import Any

from sentinel.cli.codes import EX_ERROR, EX_FINDINGS, EX_OK
from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify-log",
        help="check the alert log's hash chain and signed checkpoints",
        description="Each PATH is an alert log; its rotated files (PATH.1, PATH.2, ...) are "
        "checked with it, oldest first. Exit 0 when intact, 1 at the first bad line.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="alert log (default: the configured)")
    p.add_argument("--pubkey", help="PEM public key (default: the agent's key in state_dir)")
    p.add_argument("-c", "--config", help="TOML config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from sentinel.evidence import chain, keys

    cfg = config.load(args.config)
    try:
        if args.pubkey:
            pub = keys.load_public(args.pubkey)
        else:
            path = keys.key_path(cfg.agent.state_dir)
            pub = keys.load_private(path).public_key() if os.path.exists(path) else None
    except (keys.KeyFileError, OSError) as exc:
        print(f"sentinel: {exc}")
        return EX_ERROR
    files: list[str] = []
    for base in args.paths or [cfg.alert_log]:
        files.extend(chain.rotated(base))
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        print(f"sentinel: no such log: {missing[0]}")
        return EX_ERROR
    report = chain.verify(files, pub)
    if not report.ok:
        print(f"TAMPERED: {report.problem}")
        return EX_FINDINGS
    signed = (
        "unsigned (no public key)" if pub is None else f"{report.checkpoints} checkpoints verified"
    )
    tail = ""
    if report.last_seq is not None and report.last_checkpoint_seq != report.last_seq:
        since = report.last_checkpoint_seq if report.last_checkpoint_seq is not None else "start"
        tail = f"; lines after seq {since} are chained but not yet checkpointed"
    print(f"OK: {report.lines} lines in {len(files)} file(s), chain intact, {signed}{tail}")
    return EX_OK
