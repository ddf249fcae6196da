"""`sentinel log pubkey`: print the public key that signs the alert log's checkpoints."""

from __future__ import annotations

import argparse
from typing import Any

from sentinel.cli.codes import EX_ERROR, EX_OK
from sentinel.core import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("log", help="the alert log's signing key")
    p.add_argument("action", choices=["pubkey"], help="pubkey: print the PEM public key")
    p.add_argument("-c", "--config", help="TOML config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from sentinel.evidence import keys

    cfg = config.load(args.config)
    try:
        key = keys.load_or_create(cfg.agent.state_dir)
    except (keys.KeyFileError, OSError) as exc:
        where = getattr(exc, "filename", None) or keys.key_path(cfg.agent.state_dir)
        print(f"sentinel: {where}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EX_ERROR
    print(keys.public_pem(key), end="")
    return EX_OK
