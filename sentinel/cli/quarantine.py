"""`sentinel quarantine list|restore SHA256`: what the response quarantined, and putting it back."""

from __future__ import annotations

import argparse
import os

from sentinel.cli.codes import EX_ERROR, EX_OK
from sentinel.core import config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("quarantine", help="list or restore quarantined files")
    p.add_argument("-c", "--config", help="TOML config (default /etc/sentinel/sentinel.toml)")
    q = p.add_subparsers(dest="quarantine_command", required=True)
    q.add_parser("list", help="every quarantined file with its origin")
    r = q.add_parser("restore", help="put a quarantined file back where it was")
    r.add_argument("sha256")
    p.set_defaults(func=cmd_quarantine)


def cmd_quarantine(args: argparse.Namespace) -> int:
    from sentinel.core.safetext import escape
    from sentinel.response.quarantine import QuarantineError, Vault

    cfg = config.load(args.config)
    vault = Vault(os.path.join(cfg.agent.state_dir, "quarantine"))
    try:
        if args.quarantine_command == "list":
            for e in vault.entries():
                rec = e.to_record()
                print(
                    f"{e.sha256}  {rec['size']:>10}  {rec['mode']}  {rec['owner']:<10}  "
                    f"{rec['quarantined']}  {escape(e.incident)}  {escape(e.path)}"
                )
            return EX_OK
        entry = vault.restore(args.sha256)
    except QuarantineError as exc:
        print(f"sentinel: {escape(exc)}")
        return EX_ERROR
    print(f"restored {escape(entry.path)} ({entry.size} bytes, mode {entry.mode:04o})")
    return EX_OK
