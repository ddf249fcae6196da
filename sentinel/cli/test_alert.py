"""`sentinel test-alert [--sink NAME]`: a marked test alert through the configured sinks.

Each sink gets one attempt, straight to its endpoint (no queue, no spool, no retry), and
the command prints per sink what the endpoint answered. Exit 0 when every chosen sink
delivered, 1 otherwise, 2 for an unknown sink name, 78 for a configuration error.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sentinel.core import config
from sentinel.core.model import Category, Finding, Severity

if TYPE_CHECKING:
    from sentinel import sinks

# The sinks (aiohttp) and asyncio are imported where used: every `sentinel` command imports this
# module to build its parser.

EX_OK, EX_FAILED, EX_USAGE = 0, 1, 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("test-alert", help="send a marked test alert through the configured sinks")
    p.add_argument("-c", "--config", help="TOML config (default /etc/sentinel/sentinel.toml)")
    p.add_argument(
        "--sink", action="append", metavar="NAME", help="only this sink (repeat for more)"
    )
    p.set_defaults(func=cmd_test_alert)


def test_finding(cfg: config.Config) -> Finding:
    from sentinel.sinks._format import TEST_RULE

    finding = Finding(
        rule=TEST_RULE,
        category=Category.INTEGRITY,
        severity=Severity.INFO,
        summary="TEST ALERT from `sentinel test-alert`: delivery works, no action needed",
        detector="test-alert",
        evidence={"test": True, "config": cfg.source},
        subject="test-alert",
    )
    if cfg.agent.hostname:
        finding.host = cfg.agent.hostname
    return finding


async def send(sink: sinks.Sink, finding: Finding) -> tuple[bool, str]:
    """Deliver `finding` through one sink; (delivered, what the endpoint answered)."""
    from sentinel.sinks._http.delivery import HttpSink

    if isinstance(sink, HttpSink):
        answer = await sink.probe(finding)
        return answer.ok, answer.detail + (f": {answer.body}" if answer.body else "")
    await sink.start()
    try:
        sink.submit(finding)
    finally:
        await sink.close()
    return True, "written"


async def send_all(chosen: list[sinks.Sink], finding: Finding) -> list[tuple[bool, str]]:
    import asyncio

    return list(await asyncio.gather(*(send(s, finding) for s in chosen)))


def cmd_test_alert(args: argparse.Namespace) -> int:
    from sentinel import sinks
    from sentinel.core.context import Context
    from sentinel.rules import intel

    cfg = config.load(args.config)
    names = [s.name for s in cfg.sinks]
    unknown = [n for n in args.sink or [] if n not in names]
    if unknown:
        known = ", ".join(names) or "none"
        print(f"sentinel: no sink named {', '.join(unknown)} (configured: {known})")
        return EX_USAGE
    selected = [s for s in cfg.sinks if not args.sink or s.name in args.sink]
    if not selected:
        print(f"sentinel: no [[sinks]] configured in {cfg.source}")
        return EX_FAILED
    try:
        ctx = Context(cfg, intel.load(cfg.rule_dirs))
    except intel.IntelError as exc:
        raise config.ConfigError(str(exc)) from None
    registry = sinks.load_all()
    chosen = []
    for sc in selected:
        if sc.type not in registry:
            raise config.ConfigError(
                f"{cfg.source}: sinks '{sc.name}': unknown type {sc.type!r} "
                f"(known: {', '.join(registry)})"
            )
        chosen.append(registry[sc.type](sc, ctx))
    finding = test_finding(cfg)
    import asyncio

    results = asyncio.run(send_all(chosen, finding))
    for sink, (ok, detail) in zip(chosen, results, strict=True):
        print(f"{sink.name} ({sink.type}): {'delivered' if ok else 'FAILED'}: {detail}")
    return EX_OK if all(ok for ok, _ in results) else EX_FAILED
