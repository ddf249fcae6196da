"""What a socket's owner shows beyond its argv: which of its standard fds hold the socket,
what its stdin is, and the stratum URLs, pool addresses and wallets that its environment
(or a config file it reads on stdin) names.

The environment holds secrets: it is read capped, only indicators are kept (URLs with
their credentials redacted, `host:port` values of pool-named variables, checksum-valid
wallets, and the names of the variables that held them), and it is never stored, logged
or put in a finding whole.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from sentinel.core import safeopen
from sentinel.core.events import Indicators, OwnerFacts
from sentinel.rules.indicators import indicators

ENV_CAP = 64 * 1024  # bytes of /proc/PID/environ read
STDIN_CAP = 64 * 1024  # bytes of a config file on stdin read
CACHE = 4096  # processes whose indicators are remembered
STDIO = ("stdin", "stdout", "stderr")


def stdio_of(procfs: str, pid: int, inode: int) -> tuple[str, ...]:
    """The standard streams (stdin, stdout, stderr) of `pid` that are this socket."""
    link = f"socket:[{inode}]"
    found = []
    for fd, name in enumerate(STDIO):
        try:
            if os.readlink(f"{procfs}/{pid}/fd/{fd}") == link:
                found.append(name)
        except OSError:
            continue
    return tuple(found)


def stdin_of(procfs: str, pid: int) -> str:
    """'pipe', 'socket', 'tty', a file's path, or '' (closed or unreadable)."""
    try:
        target = os.readlink(f"{procfs}/{pid}/fd/0")
    except OSError:
        return ""
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith(("/dev/pts/", "/dev/tty")):
        return "tty"
    return target


def environ_indicators(procfs: str, pid: int) -> Indicators | None:
    """Indicators of the first ENV_CAP bytes of the process's environment."""
    try:
        with open(f"{procfs}/{pid}/environ", "rb") as f:
            raw = f.read(ENV_CAP)
    except OSError:
        return None
    pairs = []
    for entry in raw.split(b"\0"):
        name, _, value = entry.decode("utf-8", "replace").partition("=")
        pairs.append((name[:64], value))
    return indicators(pairs, "environ")


def file_indicators(path: str) -> Indicators | None:
    """Indicators of the first STDIN_CAP bytes of a regular file (no symlink followed)."""
    try:
        _, head, _ = safeopen.read_nofollow(path, STDIN_CAP, 0)
    except OSError:
        return None
    text = head.decode("utf-8", "replace")
    return indicators([("", line) for line in text.splitlines()], f"stdin:{path}")


def hidden_of(
    procfs: str, pid: int, stdin: str, watched: tuple[str, ...]
) -> tuple[Indicators, ...]:
    """Indicators of the process's environment and, when its stdin is a file under one of
    the `watched` prefixes, of that file."""
    found = [environ_indicators(procfs, pid)]
    if stdin.startswith(watched):
        found.append(file_indicators(stdin))
    return tuple(i for i in found if i is not None)


def prefixes(paths: list[str]) -> tuple[str, ...]:
    return tuple(p.rstrip("/") + "/" for p in paths)


class OwnerReader:
    """Reads owner facts, the environment and stdin once per process (by pid and start)."""

    def __init__(self, procfs: str, watched: list[str]) -> None:
        self.procfs = procfs
        self.watched = prefixes(watched)
        self.cache: OrderedDict[tuple[int, float], tuple[str, tuple[Indicators, ...]]] = (
            OrderedDict()
        )

    def facts(self, pid: int, start: float, inode: int) -> OwnerFacts:
        """The facts of `pid` about the socket `inode`."""
        key = (pid, start)
        known = self.cache.get(key)
        if known is None:
            stdin = stdin_of(self.procfs, pid)
            known = self.cache[key] = (stdin, hidden_of(self.procfs, pid, stdin, self.watched))
            if len(self.cache) > CACHE:
                self.cache.popitem(last=False)
        stdin, hidden = known
        return OwnerFacts(stdio_of(self.procfs, pid, inode), stdin, hidden)
