"""Run the embedded tests of catalogue rules: each sample must give the expected severity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentinel.rules.catalogue import Catalogue, Rule, Sample


@dataclass(frozen=True, slots=True)
class Failure:
    """One sample that did not give what its rule expects."""

    rule: Rule
    sample: Sample
    got: str

    def __str__(self) -> str:
        shown = {k: v for k, v in self.sample.data.items() if k != "expect"}
        return (
            f"{self.rule.file}:{self.sample.line}: {self.rule.id} ({self.rule.event}): "
            f"expected {self.sample.expect}, got {self.got} for {shown}"
        )


def outcome(cat: Catalogue, rule: Rule, data: dict[str, Any]) -> str:
    """The severity (lower-case) the rule gives the sample, or 'none'."""
    kind = cat.kinds[rule.event]
    assert kind.sample is not None, f"event kind {kind.name} has no sample builder"
    m = rule.evaluate(cat.subject(rule.event, kind.sample(data)))
    return "none" if m is None else m.severity.name.lower()


def run(cat: Catalogue, rules: list[Rule] | None = None) -> tuple[int, list[Failure]]:
    """(samples run, failures) over the given rules (default: the whole catalogue)."""
    count, failures = 0, []
    for rule in cat.all_rules() if rules is None else rules:
        for sample in rule.tests:
            count += 1
            got = outcome(cat, rule, sample.data)
            if got != sample.expect:
                failures.append(Failure(rule, sample, got))
    return count, failures
