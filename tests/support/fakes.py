"""Test helpers: detector contexts and process facts; the safe stand-ins (fake wallets,
miner-like burners, a fake stratum pool) live in sentinel/evidence/drillkit.py, which the
drill ships with, and are re-exported here.
"""

from __future__ import annotations

import dataclasses

from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.model import Ancestor, Proc
from sentinel.evidence.drillkit import (
    fake_elf_miner,
    fake_monero_address,
    free_pool_port,
    write_burner,
)
from sentinel.rules import intel

__all__ = [
    "context",
    "fake_elf_miner",
    "fake_monero_address",
    "free_pool_port",
    "proc",
    "write_burner",
]

TEST_DOMAINS = {
    "pool_domains": ("minepool.test",),
    "tunnel_domains": ("tunnel.test",),
    "dyndns_domains": ("dyn.test",),
}


def context(toml: str = "", **overrides: object) -> Context:
    """A detector context on a parsed config, with reserved .test names for the domain lists."""
    lists = dataclasses.replace(intel.load(), **{**TEST_DOMAINS, **overrides})
    return Context(config.parse(toml), lists)


def proc(
    pid: int = 4242,
    name: str = "worker",
    exe: str = "/usr/bin/worker",
    cmdline: list[str] | None = None,
    ppid: int = 100,
    start_time: float = 1000.0,
    **kw: object,
) -> Proc:
    """Process facts as a collector would emit them, with one ancestor."""
    cmd = [exe] if cmdline is None else cmdline
    p = Proc(
        pid=pid,
        ppid=ppid,
        name=name,
        exe=exe,
        cmdline=cmd,
        user="root",
        start_time=start_time,
        ancestors=[Ancestor(ppid, "bash", "/usr/bin/bash")],
        uid=0,
        argv0=cmd[0] if cmd else "",
    )
    for key, value in kw.items():
        setattr(p, key, value)
    return p
