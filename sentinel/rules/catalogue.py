"""The rule catalogue at run time: subjects with lazily computed fields, compiled rules, matches.

A rule matches a subject of its event kind when every `match.all` condition and at least
one `match.any` condition holds; a condition is one field, one operator and one value.
Fields are computed at most once per subject. `sentinel.rules.loader` builds catalogues.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel.core.model import Category, Severity
from sentinel.rules.kinds import Kind
from sentinel.rules.operators import elements

log = logging.getLogger(__name__)
TEMPLATE = re.compile(r"\{([a-z0-9_.]+)(?:\[(\d+)\])?\}")


class CatalogueError(Exception):
    """A rule file that cannot be loaded; the message names the file, the line and the key."""


Cond = Callable[["Subject", dict[str, Any]], bool]


class Condition:
    """A compiled condition; `gate` names its field when it can only hold if that is set."""

    __slots__ = ("check", "gate")

    def __init__(self, check: Cond, gate: str = "") -> None:
        self.check = check
        self.gate = gate

    def __call__(self, s: Subject, caps: dict[str, Any]) -> bool:
        return self.check(s, caps)


_MISSING = object()


class Subject:
    """One event seen as a rule subject: its fields, computed once each, on demand."""

    __slots__ = ("cache", "catalogue", "kind", "obj")

    def __init__(self, kind: Kind, obj: Any, catalogue: Catalogue) -> None:
        self.kind = kind
        self.obj = obj
        self.catalogue = catalogue
        self.cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        value = self.cache.get(name, _MISSING)
        if value is _MISSING:
            value = self.cache[name] = self.kind.fields[name](self)
        return value

    def list(self, name: str) -> Any:
        return self.catalogue.lists[name]


@dataclass(frozen=True, slots=True)
class Sample:
    """One embedded rule test: a sample of the rule's event kind and the expected severity."""

    line: int
    data: dict[str, Any]

    @property
    def expect(self) -> str:
        return str(self.data["expect"]).lower()


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that held for a subject, with its severity, summary and evidence."""

    rule: Rule
    severity: Severity
    summary: str
    evidence: dict[str, Any]


@dataclass(slots=True)
class Rule:
    """One compiled rule, with where it was written."""

    id: str
    title: str
    category: Category
    severity: Severity
    event: str
    summary: str
    file: str
    line: int
    description: str = ""
    references: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    attack: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)
    sets: dict[str, Any] = field(default_factory=dict)
    match_all: list[Condition] = field(default_factory=list)
    match_any: list[Condition] = field(default_factory=list)
    downgrades: list[tuple[list[Condition], list[Condition], Severity]] = field(
        default_factory=list
    )
    exceptions: list[Cond] = field(default_factory=list)
    tests: list[Sample] = field(default_factory=list)
    replaces: str = ""  # where the rule of the same id and event it replaced was written
    gate: str = ""  # a field the rule needs set: when it is not, the rule is not run

    def __post_init__(self) -> None:
        first = self.match_all[0] if self.match_all else None
        self.gate = first.gate if isinstance(first, Condition) else ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def evaluate(self, s: Subject) -> Match | None:
        """The match of this rule on the subject, or None (no match, or an exception holds)."""
        caps: dict[str, Any] = {}
        for c in self.match_all:  # the hot path: Condition.check called directly
            if not c.check(s, caps):
                return None
        if self.match_any and not any(c.check(s, caps) for c in self.match_any):
            return None
        if self.exceptions and any(c(s, {}) for c in self.exceptions):
            return None
        s.cache.update(self.sets)
        severity = self.severity
        for all_, any_, lower in self.downgrades:
            if all(c(s, caps) for c in all_) and (not any_ or any(c(s, caps) for c in any_)):
                severity = lower
                break
        look = _Lookup(s, caps)
        summary = TEMPLATE.sub(look.text, self.summary)
        evidence: dict[str, Any] = {}
        for key, name in self.evidence.items():
            value = look.value(name)
            if key == "*" and isinstance(value, dict):
                evidence.update(value)
            elif value is not None:
                evidence[key] = value
        return Match(self, severity, summary, evidence)

    def metadata(self) -> dict[str, Any]:
        """What `rules list --json` shows of the rule."""
        return {
            "id": self.id,
            "title": self.title,
            "category": self.category.value,
            "severity": self.severity.name.lower(),
            "event": self.event,
            "description": self.description,
            "references": self.references,
            "false_positives": self.false_positives,
            "attack": self.attack,
            "tags": self.tags,
            "file": self.file,
            "line": self.line,
            "tests": len(self.tests),
            "replaces": self.replaces,
        }


class _Lookup:
    """Names in summaries and evidence: a capture of this match first, then a field."""

    __slots__ = ("caps", "s")

    def __init__(self, s: Subject, caps: dict[str, Any]) -> None:
        self.s, self.caps = s, caps

    def value(self, name: str) -> Any:
        return self.caps[name] if name in self.caps else self.s.get(name)

    def text(self, m: re.Match[str]) -> str:
        value = self.value(m.group(1))
        if m.group(2) is not None:
            items = elements(value)
            index = int(m.group(2))
            value = items[index] if index < len(items) else ""
        return "" if value is None else str(value)


def _rule_failed(rule: Rule, s: Subject) -> None:
    """Log and count a rule that raised on a subject; the other rules go on."""
    from sentinel.ops import metrics

    log.exception("rule %s (%s) failed on a %s event", rule.id, rule.where, s.kind.name)
    metrics.errors.labels("rules").inc()


@dataclass
class Catalogue:
    """Every rule by event kind, the named lists they use, and where each came from."""

    kinds: dict[str, Kind]
    lists: dict[str, Any]
    rules: dict[str, list[Rule]] = field(default_factory=dict)
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)
    memos: dict[str, Callable[..., Any]] = field(default_factory=dict, repr=False)
    failures: int = 0  # rules that raised on a subject (a memo keeps no result with one)

    def pattern(self, name: str) -> re.Pattern[str]:
        """A list of regular expressions as one alternation (compiled once, checked at load)."""
        rx = self.patterns.get(name)
        if rx is None:
            rx = self.patterns[name] = re.compile("|".join(f"(?:{p})" for p in self.lists[name]))
        return rx

    def all_rules(self) -> list[Rule]:
        return [r for rules in self.rules.values() for r in rules]

    def subject(self, kind: str, obj: Any) -> Subject:
        return Subject(self.kinds[kind], obj, self)

    def evaluate(self, kind: str, obj: Any) -> list[Match]:
        """Matches of every rule of the kind on one event (the first only, for some kinds)."""
        return self.evaluate_subject(self.subject(kind, obj))

    def evaluate_subject(self, s: Subject) -> list[Match]:
        out = []
        get, cache = s.get, s.cache
        for rule in self.rules.get(s.kind.name, ()):
            gate = rule.gate
            try:
                if gate:
                    v = cache.get(gate, _MISSING)
                    if not (get(gate) if v is _MISSING else v):
                        continue
                m = rule.evaluate(s)
            except Exception:  # one failing field on hostile input loses only its rule
                self.failures += 1
                _rule_failed(rule, s)
                continue
            if m is not None:
                out.append(m)
                if s.kind.first_match:
                    break
        return out
