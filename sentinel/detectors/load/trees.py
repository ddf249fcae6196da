"""Process trees: where a tree is rooted, and which member carries its load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentinel.core.model import Proc

DECAY = 0.7  # per-tick decay of each process's weight when picking a tree's heaviest

BOUNDARIES = frozenset(
    {
        "systemd",
        "init",
        "sshd",
        "sshd-session",
        "login",
        "cron",
        "crond",
        "CRON",
        "atd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "conmon",
        "tmux: server",
        "SCREEN",
        "screen",
        "supervisord",
        "runsv",
        "s6-supervise",
        "tini",
        "dumb-init",
        "docker-init",
    }
)


def tree_root(proc: Proc) -> tuple[int, str]:
    """(pid, name) of the root of the process's tree: the highest ancestor below a boundary."""
    root = (proc.pid, proc.name)
    if proc.pid <= 2 or proc.name in BOUNDARIES:
        return root
    for a in proc.ancestors:
        if a.pid <= 2 or a.name in BOUNDARIES:
            break
        root = (a.pid, a.name)
    return root


@dataclass
class Tree:
    """One tree's members and their decayed load."""

    root: tuple[int, str]
    weight: dict[int, float] = field(default_factory=dict)
    procs: dict[int, Proc | None] = field(default_factory=dict)
    current: set[int] = field(default_factory=set)
    absent: int = 0

    def update(self, members: list[tuple[int, float, Proc | None]]) -> None:
        for pid in self.weight:
            self.weight[pid] *= DECAY
        self.current = set()
        for pid, load, proc in members:
            self.weight[pid] = self.weight.get(pid, 0.0) + load
            self.procs[pid] = proc
            self.current.add(pid)
        for pid in [p for p, w in self.weight.items() if w < 1e-3 and p not in self.current]:
            del self.weight[pid]
            self.procs.pop(pid, None)
        self.absent = 0

    def _chain(self, pid: int) -> list[int]:
        """The pid and its ancestors up to the tree's root, nearest first."""
        chain = [pid]
        proc = self.procs.get(pid)
        if proc is not None and pid != self.root[0]:
            for a in proc.ancestors:
                chain.append(a.pid)
                if a.pid == self.root[0]:
                    break
        return chain

    def dominant(self) -> tuple[int, float]:
        """(pid, share) of the deepest process whose subtree carries over half the tree's
        recent load: a miner itself, or the make whose short-lived children do the work."""
        total = sum(self.weight.values())
        sub: dict[int, float] = {}
        depth: dict[int, int] = {}
        for pid, w in self.weight.items():
            chain = self._chain(pid)
            for i, p in enumerate(chain):
                sub[p] = sub.get(p, 0.0) + w
                depth[p] = len(chain) - 1 - i
        heavy = [p for p, v in sub.items() if v > 0.5 * total]
        if not heavy:  # no majority: the heaviest live member
            heavy = [max(self.current or self.weight, key=lambda p: self.weight.get(p, 0.0))]
        pid = max(heavy, key=lambda p: depth.get(p, 0))
        return pid, sub.get(pid, 0.0) / (total or 1.0)

    def carries(self, pid: int) -> bool:
        """Whether pid is a live member or an ancestor of one."""
        return any(pid in self._chain(member) for member in self.current)

    def top(self, n: int = 5) -> list[dict[str, Any]]:
        total = sum(self.weight.values()) or 1.0
        ranked = sorted(self.weight.items(), key=lambda kv: -kv[1])[:n]
        return [
            {"pid": pid, "name": p.name if (p := self.procs.get(pid)) else "", "share": w / total}
            for pid, w in ranked
        ]
