"""Every record a sink writes fits in RECORD_CAP bytes of JSON (one line of the log).

A record over the cap is cut in a defined way and still valid JSON: its strings,
lists and objects are shortened, evidence first and then the whole record, at ever
smaller sizes until it fits; `truncated: true` says so. Evidence that still does not
fit is replaced by the list of its keys.
"""

from __future__ import annotations

import json
from typing import Any

RECORD_CAP = 64 * 1024
ELLIPSIS = "…"
STEPS = (4096, 1024, 256, 64)  # longest string kept per step
MAX_DEPTH = 4


def size(record: dict[str, Any]) -> int:
    """Bytes of the record as the alert log writes it (ASCII escapes)."""
    return len(json.dumps(record, default=str))


def _shrink(value: Any, n: int, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value if len(value) <= n else value[: n - 1] + ELLIPSIS
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return _shrink(json.dumps(value, default=str), n)
    if isinstance(value, dict):
        items = list(value.items())[: max(8, n // 16)]
        return {str(k)[:64]: _shrink(v, n, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_shrink(v, n, depth + 1) for v in value[: max(4, n // 64)]]
    return value


def capped(record: dict[str, Any], limit: int = RECORD_CAP) -> dict[str, Any]:
    """`record` itself when it fits in `limit` bytes, else a shortened copy marked
    `truncated: true`."""
    if size(record) <= limit:
        return record
    for n in STEPS:
        out = {**record, "evidence": _shrink(record.get("evidence") or {}, n), "truncated": True}
        if size(out) <= limit:
            return out
    keys = sorted(str(k)[:64] for k in (record.get("evidence") or {}))[:64]
    base = {**record, "evidence": {"trimmed_keys": keys}, "truncated": True}
    for n in STEPS:
        out = _shrink(base, n)
        out["truncated"] = True
        if size(out) <= limit:
            return out
    return {
        k: _shrink(record.get(k), 64)
        for k in ("id", "time", "host", "rule", "category", "severity", "summary", "detector")
    } | {"process": None, "file": None, "connection": None, "evidence": {}, "truncated": True}
