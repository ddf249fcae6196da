"""Cut egress with nftables (`nft -j`): table `inet sentinel`, counters on every drop.

The output chain accepts loopback and, for the agent's own uid, the sinks' destinations
first (so the alert still goes out), then jumps to `contain`, where each incident appends
its drops: the scope's uid (`meta skuid`) or cgroup (`socket cgroupv2`), and a
destination set whose elements time out; the forward chain (containers behind the host)
drops the destination set too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TABLE = {"family": "inet", "name": "sentinel"}
TIMEOUT = 10.0  # seconds one nft call may take


class NftError(Exception):
    """nft refused a command; the message is what it said."""


def _t(**kw: Any) -> dict[str, Any]:
    return {"family": "inet", "table": "sentinel", **kw}


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _daddr(proto: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": "daddr"}}


def _rule(chain: str, comment: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"add": {"rule": _t(chain=chain, comment=comment, expr=list(expr))}}


COUNT_DROP = ({"counter": None}, {"drop": None})


def base_ruleset() -> list[dict[str, Any]]:
    """The table, its sets and the rules that keep loopback and the sinks reachable."""
    sets = []
    for name, kind, flags in (
        ("allow4", "ipv4_addr", []),
        ("allow6", "ipv6_addr", []),
        ("dest4", "ipv4_addr", ["timeout"]),
        ("dest6", "ipv6_addr", ["timeout"]),
    ):
        sets.append({"add": {"set": _t(name=name, type=kind, flags=flags)}})
    hook = {"type": "filter", "hook": "output", "prio": 0, "policy": "accept"}
    # the sinks stay reachable for the agent's own sockets only: for the contained, a sink
    # address (a shared front such as a CDN) would be a way out
    agent = _match({"meta": {"key": "skuid"}}, os.geteuid())
    return [
        {"add": {"table": TABLE}},
        {"add": {"chain": _t(name="output", **hook)}},
        {"add": {"chain": _t(name="forward", **{**hook, "hook": "forward"})}},
        {"add": {"chain": _t(name="contain")}},
        *sets,
        _rule("output", "base", _match({"meta": {"key": "oifname"}}, "lo"), {"accept": None}),
        _rule("output", "base", agent, _match(_daddr("ip"), "@allow4"), {"accept": None}),
        _rule("output", "base", agent, _match(_daddr("ip6"), "@allow6"), {"accept": None}),
        _rule("output", "base", {"jump": {"target": "contain"}}),
        # a container's netns reaches out through the host's forward path: the destination
        # drops hold there too (a forwarded packet has no local socket for the uid and
        # cgroup drops to match, and nft refuses `socket` in a forward chain)
        _rule("forward", "base", _match(_daddr("ip"), "@dest4"), *COUNT_DROP),
        _rule("forward", "base", _match(_daddr("ip6"), "@dest6"), *COUNT_DROP),
        _rule("contain", "base", _match(_daddr("ip"), "@dest4"), *COUNT_DROP),
        _rule("contain", "base", _match(_daddr("ip6"), "@dest6"), *COUNT_DROP),
    ]


RESOLVED_TTL = 300.0  # seconds a sink host's addresses are reused (no DNS before a cut)
_resolved: dict[str, tuple[float, list[str]]] = {}


def sink_addresses(urls: list[str]) -> list[str]:
    """The addresses the sinks deliver to, which must stay reachable."""
    out: set[str] = set()
    now = time.monotonic()
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            continue
        cached = _resolved.get(host)
        if cached is None or now - cached[0] > RESOLVED_TTL:
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                cached = (now, sorted({str(info[4][0]) for info in infos}))
            except OSError:
                cached = (now, cached[1] if cached else [])
            _resolved[host] = cached
        out.update(cached[1])
    return sorted(out)


def _family(addr: str) -> str:
    return "6" if ":" in addr else "4"


@dataclass
class Cut:
    """What one incident added, enough to undo it."""

    comment: str
    uids: list[int] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        return {
            "comment": self.comment,
            "uids": self.uids,
            "cgroups": self.cgroups,
            "destinations": self.destinations,
            "allowed": self.allowed,
        }


class Nft:
    """Runs `nft` (a command prefix, so tests can enter a network namespace)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command

    def run(self, *args: str, stdin: str | None = None) -> str:
        try:
            res = subprocess.run(
                [*self.command, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"{self.command[-1]}: {exc}") from None
        if res.returncode != 0:
            raise NftError(res.stderr.strip() or f"exit {res.returncode}")
        return res.stdout

    def batch(self, commands: list[dict[str, Any]]) -> None:
        self.run("-j", "-f", "-", stdin=json.dumps({"nftables": commands}))

    def table(self) -> list[dict[str, Any]]:
        """The objects of table inet sentinel (empty when it does not exist)."""
        try:
            out = self.run("-j", "-a", "list", "table", "inet", "sentinel")
        except NftError as exc:
            if "No such file" in str(exc):
                return []
            raise
        return [o for o in json.loads(out)["nftables"] if "metainfo" not in o]

    def cut(
        self,
        incident: str,
        *,
        uids: list[int],
        cgroups: list[tuple[str, int]],
        destinations: list[str],
        allow: list[str],
        timeout: int,
    ) -> Cut:
        """Add the incident's drops; `cgroups` are (path relative to /sys/fs/cgroup, level)."""
        comment = f"sentinel:{incident}"
        commands = [] if self.table() else base_ruleset()
        for addr in allow:
            elem = {"elem": [addr]}
            commands.append({"add": {"element": _t(name=f"allow{_family(addr)}", **elem)}})
        for uid in uids:
            skuid = _match({"meta": {"key": "skuid"}}, uid)
            commands.append(_rule("contain", comment, skuid, *COUNT_DROP))
        for addr in destinations:
            elem = {"elem": [{"elem": {"val": addr, "timeout": timeout}}]}
            commands.append({"add": {"element": _t(name=f"dest{_family(addr)}", **elem)}})
        self.batch(commands)
        for path, level in cgroups:
            # nft 1.0's JSON parser has no `socket cgroupv2`; its text syntax does
            self.run(
                "add rule inet sentinel contain socket cgroupv2 level "
                f'{level} "{path}" counter drop comment "{comment}"'
            )
        return Cut(comment, uids, [p for p, _ in cgroups], destinations, allow)

    def release(self, comment: str | None, destinations: Sequence[str] = ()) -> list[str]:
        """Remove one incident's rules and destinations, or (comment None) the whole table."""
        objects = self.table()
        if not objects:
            return []
        if comment is None:
            self.batch([{"delete": {"table": TABLE}}])
            return ["table inet sentinel"]
        commands: list[dict[str, Any]] = []
        undone = []
        for obj in objects:
            rule = obj.get("rule")
            if rule and rule.get("comment") == comment:
                where = _t(chain=rule["chain"], handle=rule["handle"])
                commands.append({"delete": {"rule": where}})
                undone.append(f"rule {rule['handle']}")
        present = {
            e if isinstance(e, str) else e.get("elem", {}).get("val")
            for obj in objects
            if (s := obj.get("set")) and s["name"].startswith("dest")
            for e in s.get("elem", [])
        }
        for addr in destinations:
            if addr in present:
                elem = {"elem": [addr]}
                commands.append({"delete": {"element": _t(name=f"dest{_family(addr)}", **elem)}})
                undone.append(f"destination {addr}")
        if commands:
            self.batch(commands)
        return undone

    def counters(self, comment: str) -> int:
        """Packets dropped so far by the incident's rules."""
        total = 0
        for obj in self.table():
            rule = obj.get("rule")
            if rule and rule.get("comment") == comment:
                for expr in rule["expr"]:
                    if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
                        total += int(expr["counter"].get("packets", 0))
        return total


def cgroup_match(v2_root: str, path: str) -> tuple[str, int]:
    """The (path, level) nft wants: relative to /sys/fs/cgroup, level in the v2 tree."""
    full = os.path.join(v2_root, path.lstrip("/"))
    return os.path.relpath(full, "/sys/fs/cgroup"), len([p for p in path.split("/") if p])
