"""`sentinel run`: signed records of evaluation runs.

sentinel run begin NAME [--meta k=v ...]
sentinel run end NAME
sentinel run NAME [--meta k=v ...] -- COMMAND ...
sentinel run verify FILE [--pubkey FILE]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sentinel.cli.codes import EX_ERROR, EX_FINDINGS, EX_OK
from sentinel.core import config

USAGE = (
    "sentinel run begin NAME [--meta k=v ...] | run end NAME | "
    "run NAME [--meta k=v ...] -- COMMAND ... | run verify FILE [--pubkey FILE]"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="signed records of evaluation runs", usage=USAGE, description=__doc__
    )
    p.add_argument("-c", "--config", help="TOML config")
    p.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _rest_parser(first: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"sentinel run {first}", usage=USAGE)
    p.add_argument("target", metavar="NAME_OR_FILE")
    p.add_argument("--meta", action="append", default=[], metavar="K=V")
    p.add_argument("--pubkey", help="PEM public key (default: the agent's)")
    p.add_argument("-c", "--config")
    return p


def _meta(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise SystemExit(f"sentinel run: --meta {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def run(args: argparse.Namespace) -> int:
    from sentinel.evidence import runs

    words = list(args.words)
    if not words:
        print(f"usage: {USAGE}", file=sys.stderr)
        return EX_ERROR
    command: list[str] | None = None
    if "--" in words:
        i = words.index("--")
        words, command = words[:i], words[i + 1 :]
    action = words[0] if words[0] in ("begin", "end", "verify") and command is None else "wrap"
    opts = _rest_parser(action).parse_args(words[1:] if action != "wrap" else words)
    cfg = config.load(opts.config or args.config)
    try:
        if action == "verify":
            return _verify(cfg, opts.target, opts.pubkey)
        if action == "begin":
            runs.begin(cfg, opts.target, _meta(opts.meta))
            print(runs.run_dir(cfg) / f"{opts.target}.begin.json")
            return EX_OK
        if action == "end":
            print(runs.end(cfg, opts.target))
            return EX_OK
        if not command:
            print(f"sentinel run: no command after '--'\nusage: {USAGE}", file=sys.stderr)
            return EX_ERROR
        return _wrap(cfg, opts.target, _meta(opts.meta), command)
    except runs.RunError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EX_ERROR


def _wrap(cfg: config.Config, name: str, meta: dict[str, str], command: list[str]) -> int:
    import signal
    import subprocess

    from sentinel.evidence import runs

    runs.begin(cfg, name, meta, command)
    code: int | None = None
    try:
        proc = subprocess.Popen(command)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            code = proc.wait()
    except OSError as exc:
        print(f"sentinel: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        code = 127
    finally:
        print(runs.end(cfg, name, code))
    return code if code is not None and code >= 0 else EX_ERROR


def _verify(cfg: config.Config, path: str, pubkey: str | None) -> int:
    import json

    from sentinel.evidence import keys, runs

    try:
        pub = (
            keys.load_public(pubkey)
            if pubkey
            else keys.load_private(keys.key_path(cfg.agent.state_dir)).public_key()
        )
    except (keys.KeyFileError, OSError) as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EX_ERROR
    try:
        with open(path, encoding="utf-8") as f:
            envelope = json.load(f)
        statement = runs.verify(envelope, pub)
    except (OSError, ValueError) as exc:
        print(f"INVALID: {path}: {exc}")
        return EX_FINDINGS
    except runs.RunError as exc:
        print(f"INVALID: {path}: {exc}")
        return EX_FINDINGS
    p = statement["predicate"]
    print(
        f"OK: run {p['run']['name']!r} {p['run']['started']} .. {p['run']['ended']} on "
        f"{p['host']}: findings {p['findings']['by_severity'] or 'none'}"
    )
    return EX_OK
