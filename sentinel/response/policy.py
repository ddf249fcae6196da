"""Which findings get which actions, and the plan for one incident."""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from sentinel.core.config import RESPONSE_ACTIONS, ResponseConfig
from sentinel.core.model import Category, Finding, Severity, same_start
from sentinel.response.targets import Identity, Scope, identity

DEFAULT_CATEGORIES = frozenset({Category.MINER, Category.TUNNEL})


def parse_scope(text: str) -> Scope:
    kind, _, value = text.partition(":")
    return Scope(kind, value) if text else Scope()


@dataclass
class Plan:
    """What to do for one incident, decided before anything is done."""

    incident: str
    actions: list[str]
    dry_run: bool
    severity: Severity = Severity.HIGH
    trigger: Finding | None = None
    roots: list[Identity] = field(default_factory=list)
    whole_scope: Scope | None = None  # contain --user/--cgroup/--unit: every process in it
    files: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def remote(addr: str) -> bool:
    """Whether an address is a real remote destination (not loopback, unspecified)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local)


class Policy:
    """Maps findings to actions by rule id (glob), category and minimum severity."""

    def __init__(self, cfg: ResponseConfig) -> None:
        self.cfg = cfg

    def actions_for(self, f: Finding) -> list[str]:
        if self.cfg.mode == "off" or f.rule.startswith("response."):
            return []
        if not self.cfg.rules:
            wanted = f.category in DEFAULT_CATEGORIES and f.severity >= Severity.HIGH
            return list(RESPONSE_ACTIONS) if wanted else []
        for rule in self.cfg.rules:
            if rule.rule and not fnmatch.fnmatchcase(f.rule, rule.rule):
                continue
            if rule.category and rule.category != str(f.category):
                continue
            if f.severity < Severity.parse(rule.min_severity):
                continue
            return [a for a in RESPONSE_ACTIONS if a in rule.actions]
        return []

    def decide(self, f: Finding) -> Plan | None:
        """The plan for a finding, or None when policy says no action."""
        actions = self.actions_for(f)
        if not actions:
            return None
        plan = Plan(f.id, actions, self.cfg.mode == "dry-run", f.severity, f)
        if f.process is not None:
            ident = identity(f.process.pid)
            if ident is not None and same_start(ident.start_time, f.process.start_time):
                plan.roots.append(ident)
            else:
                plan.skipped[f.process.pid] = "identity changed before the decision"
        if f.file is not None:
            plan.files.append(f.file.path)
        if f.connection is not None and remote(f.connection.raddr):
            plan.destinations.append(f.connection.raddr)
        plan.records.append(f.to_record())
        return plan
