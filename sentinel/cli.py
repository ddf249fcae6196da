"""Command-line entry points: agent, scan, check-config, test-alert."""

from __future__ import annotations

import argparse
import logging
import sys

from sentinel import __version__, cli_scan, cli_test_alert, config

EX_OK, EX_FINDINGS, EX_ERROR, EX_CONFIG = 0, 1, 2, 78


def _load_config(path: str | None) -> config.Config:
    return config.load(path)


def cmd_agent(args: argparse.Namespace) -> int:
    import asyncio

    from sentinel.engine import Engine

    cfg = _load_config(args.config)
    if args.procfs != "/proc":
        logging.getLogger("sentinel").info("reading processes from %s", args.procfs)
    engine = Engine(cfg, procfs=args.procfs, config_path=args.config)
    return asyncio.run(engine.run())


def cmd_check_config(args: argparse.Namespace) -> int:
    from sentinel.engine import Engine

    cfg = _load_config(args.config)
    Engine(cfg)  # builds every plugin and compiles the rules and lists
    print(f"{cfg.source}: OK")
    return EX_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    agent = sub.add_parser("agent", help="run the real-time agent")
    agent.add_argument("-c", "--config", help="TOML config (default /etc/sentinel/sentinel.toml)")
    agent.add_argument("--procfs", default="/proc", help=argparse.SUPPRESS)
    agent.set_defaults(func=cmd_agent)

    check = sub.add_parser("check-config", help="validate the config, rules and lists")
    check.add_argument("-c", "--config", help="TOML config to check")
    check.set_defaults(func=cmd_check_config)

    cli_scan.add_parser(sub)
    cli_test_alert.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="sentinel: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
