"""The agent's own processes: itself and what it starts, told by pid and start time."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sentinel.core.model import Proc, same_start
from sentinel.core.proctable import read_stat


@dataclass(frozen=True, slots=True)
class Own:
    """This agent process, whose pid and start time no other process can share while it
    runs; never its name, which anyone can take (`exec -a sentinel ./miner`)."""

    pid: int
    start_time: float

    @classmethod
    def current(cls, procfs: str = "/proc") -> Own:
        st = read_stat(os.getpid(), procfs)
        return cls(os.getpid(), st[2] if st is not None else float("nan"))

    def owns(self, proc: Proc) -> bool:
        """The agent itself, or a process it started (its children, the helpers it runs):
        the agent's live pid among the ancestors read for it is the agent."""
        if proc.pid == self.pid:
            return same_start(proc.start_time, self.start_time)
        return any(a.pid == self.pid for a in proc.ancestors)
