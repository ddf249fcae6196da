"""Names the watched processes were answered with: address -> name, per network namespace.

The traffic collector fills it from DNS answers it sees; the net and traffic collectors
read it to fill Connection.domain. The agent never resolves a name itself.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol

MIN_TTL, MAX_TTL = 60, 86400  # a connection may follow an answer with ttl 0


class Answer(Protocol):
    name: str
    addr: str
    ttl: int
    chain: tuple[str, ...]


class NameMap:
    """Address -> the name it was the answer for, per network namespace; LRU, TTL-bound."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple[str, str], tuple[tuple[str, ...], float]] = OrderedDict()

    def add(self, netns: str, answer: Answer, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        ttl = min(max(answer.ttl, MIN_TTL), MAX_TTL)
        key = (netns, answer.addr)
        with self.lock:
            self.entries[key] = ((answer.name, *answer.chain), now + ttl)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def names(self, netns: str, addr: str, now: float | None = None) -> tuple[str, ...]:
        """The name last answered with `addr` in `netns` and the CNAME targets it led
        through (a pool behind a CNAME of the user's own), while its TTL lasts."""
        with self.lock:
            entry = self.entries.get((netns, addr))
            if entry is None:
                return ()
            if entry[1] < (time.monotonic() if now is None else now):
                del self.entries[(netns, addr)]
                return ()
            return entry[0]

    def name(self, netns: str, addr: str, now: float | None = None) -> str | None:
        """The name last answered with `addr` in `netns`, while its TTL lasts."""
        return next(iter(self.names(netns, addr, now)), None)

    def forget(self, netns: str) -> None:
        """Drop a namespace whose last process left."""
        with self.lock:
            for key in [k for k in self.entries if k[0] == netns]:
                del self.entries[key]
