"""Refusing regular expressions that backtrack catastrophically on hostile text.

Python's `re` has no time limit, and rules run on argv the watched agent writes: a nested
repetition such as `(\\w+\\s?)*$` takes seconds on 24 characters and hours on 40. A rule's
regex may not repeat (more than once) something that itself repeats without bound;
possessive repeats (`*+`, `++`) and atomic groups (`(?>...)`) do not backtrack and are fine.
"""

from __future__ import annotations

from re import _constants as c  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

_REPEATS = (c.MAX_REPEAT, c.MIN_REPEAT)


def nested_repeat(pattern: str) -> bool:
    """Whether the pattern repeats a part that itself holds an unbounded repeat."""
    return _walk(_parser.parse(pattern).data, inside=False)


def _parts(op: Any, av: Any) -> list[Any]:
    """The sub-patterns a node holds (possessive repeats and atomic groups: none)."""
    if op is c.SUBPATTERN:
        return [av[3]]
    if op is c.BRANCH:
        return list(av[1])
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [av[1]]
    if op is c.GROUPREF_EXISTS:
        return [alt for alt in av[1:] if alt is not None]
    return []


def _walk(items: Any, inside: bool) -> bool:
    for op, av in items:
        if op in _REPEATS:
            _, hi, sub = av
            if (inside and hi == c.MAXREPEAT) or _walk(sub, inside or hi > 1):
                return True
        elif any(_walk(part, inside) for part in _parts(op, av)):
            return True
    return False
