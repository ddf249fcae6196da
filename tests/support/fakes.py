"""Test helpers: detector contexts and process facts; the safe stand-ins (fake wallets,
miner-like burners, a fake stratum pool) live in sentinel/evidence/drillkit.py, which the
drill ships with, and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.model import Ancestor, Proc
from sentinel.evidence.drillkit import (
    BURNER,
    fake_elf_miner,
    fake_monero_address,
    free_pool_port,
    write_burner,
)
from sentinel.rules import intel

__all__ = [
    "BURNER",
    "context",
    "fake_elf_miner",
    "fake_monero_address",
    "free_pool_port",
    "proc",
    "write_burner",
    "write_forker",
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


FORKER = """#!{python}
# a miner-like tree for the response tests: keeps forking workers (each with a helper
# child) until FORK_MAX processes exist; workers idle until their deadline or orphaning
import os, sys, time
deadline = time.time() + float(os.environ.get("BURN_SECONDS", "30"))
limit = int(os.environ.get("FORK_MAX", "120"))
root = os.getpid()

def idle():
    while time.time() < deadline and os.getppid() != 1:
        time.sleep(0.05)
    os._exit(0)

made = 1
while made < limit and time.time() < deadline:
    if os.fork() == 0:
        if os.fork() == 0:
            idle()
        idle()
    made += 2
    time.sleep(0.004)
while time.time() < deadline:
    time.sleep(0.05)
"""


def write_forker(path: Path) -> Path:
    """A forking tree script at `path` (named like a miner by the caller), executable."""
    path.write_text(FORKER.format(python=os.path.realpath(sys.executable)))
    path.chmod(0o755)
    return path
