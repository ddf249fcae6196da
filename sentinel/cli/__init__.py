"""Command-line entry points: one module per command, each with `add_parser(sub)`.

Command modules are discovered (every module here but `codes` and names starting with
`_`); each keeps its heavy imports inside its functions so that the CLI starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from sentinel import __version__
from sentinel.cli.codes import EX_CONFIG, EX_ERROR, EX_OK
from sentinel.core import config

NOT_COMMANDS = frozenset({"codes"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel",
        description="Sentinel: catches rogue mining and escape attempts on GPU test boxes.",
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if not mod.startswith("_") and mod not in NOT_COMMANDS:
            importlib.import_module(f"{__name__}.{mod}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sentinel.core.safetext import EscapingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("sentinel: %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        return args.func(args)
    except config.ConfigError as exc:
        print(f"sentinel: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return EX_OK
    except Exception:
        logging.getLogger("sentinel").exception("runtime error")
        return EX_ERROR


if __name__ == "__main__":
    sys.exit(main())
