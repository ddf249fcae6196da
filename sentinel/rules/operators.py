"""Condition operators of the rule catalogue: field value and prepared rule value in, truthy
result (the matched elements for list operators) out."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sentinel.rules.intel import domain_matches


def lower(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def elements(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (list, tuple, set, frozenset)):
        return list(v)
    return [v]


def _op_exists(v: Any, _val: Any) -> Any:
    return bool(v)


def _op_equals(v: Any, val: Any) -> Any:
    return lower(v) == lower(val)


def _op_in(v: Any, val: frozenset[Any]) -> Any:
    return lower(v) in val


def _op_any(v: Any, val: frozenset[Any]) -> Any:
    if not v:
        return None
    out = [e for e in elements(v) if (e.lower() if isinstance(e, str) else e) in val]
    return (list(dict.fromkeys(out)) if len(out) > 1 else out) or None


def _op_matches(v: Any, val: re.Pattern[str]) -> Any:
    if isinstance(v, str):
        m = val.search(v)
        return [m.group(m.lastindex or 0)] if m else None
    out = [m.group(m.lastindex or 0) for e in elements(v) if (m := val.search(str(e)))]
    return out or None


def _op_contains(v: Any, val: Any) -> Any:
    if isinstance(v, str):
        return val.lower() in v.lower()
    return lower(val) in {lower(e) for e in elements(v)}


def _op_prefix_in(v: Any, val: tuple[str, ...]) -> Any:
    if isinstance(v, str):
        return [v] if v.lower().startswith(val) else None
    out = [e for e in elements(v) if str(e).lower().startswith(val)]
    return out or None


def _op_suffix_in(v: Any, val: tuple[str, ...]) -> Any:
    pairs = sorted({(str(e).lower(), s) for e in elements(v) if (s := domain_matches(str(e), val))})
    return pairs or None


def _op_gte(v: Any, val: float) -> Any:
    return isinstance(v, (int, float)) and v >= val


def _op_lte(v: Any, val: float) -> Any:
    return isinstance(v, (int, float)) and v <= val


# operator -> (function, how the value is prepared: scalar | set | regex | tuple | number)
OPERATORS: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "exists": (_op_exists, "bool"),
    "equals": (_op_equals, "scalar"),
    "in": (_op_in, "set"),
    "any": (_op_any, "set"),
    "matches": (_op_matches, "regex"),
    "contains": (_op_contains, "scalar"),
    "prefix_in": (_op_prefix_in, "tuple"),
    "suffix_in": (_op_suffix_in, "tuple"),
    "gte": (_op_gte, "number"),
    "lte": (_op_lte, "number"),
}
