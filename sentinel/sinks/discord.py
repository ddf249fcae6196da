"""Discord webhook: one embed within Discord's limits, mentions switched off.

Limits: title 256, description 4096, 25 fields (name 256, value 1024), footer 2048,
6000 characters over the whole embed, content 2000. `allowed_mentions` is empty, so
nothing in an alert (an `@everyone` in a command line, say) can ping anyone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sentinel.sinks import register
from sentinel.sinks._format import code, cut, fit, untrusted, view
from sentinel.sinks._http.delivery import HttpSink, Outbound, parse_retry_after, to_json

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
MAX_FIELDS = 25
FOOTER_LIMIT = 2048
EMBED_TOTAL = 6000
CONTENT_LIMIT = 2000
DESCRIPTION_BUDGET = 1800  # leaves room in the 6000 for facts and evidence
FACT_VALUE_BUDGET = 200
COLORS = {"critical": 0x8B0000, "high": 0xE01E1E, "medium": 0xF08C00, "low": 0xF2C744}
INFO_COLOR = 0x3B82F6

_MARKDOWN = re.compile(r"([\\*_~`|>#\[\]()<@-])")


def escape(text: str) -> str:
    """Backslash-escape Discord Markdown so untrusted text shows as typed."""
    return _MARKDOWN.sub(r"\\\1", text)


def embed_size(embed: dict[str, Any]) -> int:
    """Characters Discord counts against the 6000 limit of an embed."""
    n = len(embed.get("title", "")) + len(embed.get("description", ""))
    n += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    return n + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))


def embed(record: dict[str, Any]) -> dict[str, Any]:
    v = view(record, DESCRIPTION_BUDGET)
    parts = [fit(v.summary, DESCRIPTION_BUDGET // 3, escape)]
    for label, value in (
        ("Command line", v.cmdline),
        ("Ancestors", v.ancestors),
        ("Load, last samples", v.history),
    ):
        if value:
            parts.append(f"**{label}**\n" + fit(value, DESCRIPTION_BUDGET // 3, code))
    fields = []
    for name, value in v.facts:
        wrap = code if untrusted(name) else escape
        fields.append({"name": name, "value": fit(value, FACT_VALUE_BUDGET, wrap), "inline": True})
    out: dict[str, Any] = {
        "title": fit(v.title, TITLE_LIMIT, escape),
        "description": cut("\n".join(parts), DESCRIPTION_LIMIT),
        "color": COLORS.get(v.severity, INFO_COLOR),
        "fields": fields[:MAX_FIELDS],
        "footer": {"text": cut(v.footer, FOOTER_LIMIT)},
    }
    if record.get("time"):
        out["timestamp"] = record["time"]
    slots = MAX_FIELDS - len(out["fields"])
    for key, value in v.evidence[:slots]:
        name = cut(f"Evidence: {key}", FIELD_NAME_LIMIT)
        room = EMBED_TOTAL - embed_size(out) - len(name)
        share = min(FIELD_VALUE_LIMIT, room // max(1, slots))
        if share < 20:
            break
        out["fields"].append({"name": name, "value": fit(value, share, code), "inline": False})
        slots -= 1
    return out


def payload(record: dict[str, Any]) -> dict[str, Any]:
    v = view(record, CONTENT_LIMIT)
    return {
        "username": "Sentinel",
        "content": fit(v.title, CONTENT_LIMIT, escape),
        "embeds": [embed(record)],
        "allowed_mentions": {"parse": []},
    }


@register
class DiscordSink(HttpSink):
    type = "discord"
    rollup = True
    default_rate = 2.5  # Discord webhooks: 5 requests per 2 seconds
    default_burst = 5

    def body(self, msg: Outbound) -> bytes:
        return to_json(payload(msg.record))

    def retry_after(self, status: int, headers: Mapping[str, str], body: str) -> float | None:
        """Discord puts the precise wait in the JSON body's `retry_after` (seconds)."""
        if status == 429:
            try:
                value = json.loads(body).get("retry_after")
            except (ValueError, AttributeError):
                value = None
            if isinstance(value, int | float) and not isinstance(value, bool):
                return parse_retry_after(str(value))
        return parse_retry_after(headers.get("Retry-After"))
