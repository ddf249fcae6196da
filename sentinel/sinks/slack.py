"""Slack incoming webhook (also Mattermost and Rocket.Chat, which take the same payload).

`text` carries the whole alert as Markdown-safe lines (Mattermost and Rocket.Chat show
it; Slack uses it for notifications) and `blocks` the Slack layout, each block within
Slack's limits: header 150, section text 3000, 10 fields of 2000, 50 blocks.
"""

from __future__ import annotations

from typing import Any

from sentinel.sinks import register
from sentinel.sinks._format import code, cut, fit, plain_text, untrusted, view
from sentinel.sinks._http.delivery import HttpSink, Outbound, to_json

TEXT_LIMIT = 4000  # Slack truncates longer messages
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
MAX_BLOCKS = 50


def escape(text: str) -> str:
    """Slack's three control characters; `<!channel>` and links cannot be injected."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(label: str, text: str) -> dict[str, Any]:
    head = f"*{label}*\n"
    body = fit(text, SECTION_LIMIT - len(head), lambda t: escape(code(t)))
    return {"type": "section", "text": {"type": "mrkdwn", "text": head + body}}


def _evidence(items: list[tuple[str, str]]) -> str:
    """`*Evidence*` and one bullet per item, each value shortened to share the section."""
    text = "*Evidence*"
    share = max(100, (SECTION_LIMIT - 200) // len(items))
    for key, value in items:
        line = f"\n• {escape(key)}: "
        room = min(share, SECTION_LIMIT - len(text) - len(line) - 2)
        if room < 10:
            return text + "\n…"
        text += line + fit(value, room, lambda t: escape(code(t)))
    return text


def blocks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Slack Block Kit blocks for an alert record, within Slack's limits."""
    v = view(record, SECTION_LIMIT)
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(v.title, HEADER_LIMIT)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": fit(v.summary, SECTION_LIMIT, escape)},
        },
    ]
    fields = []
    for name, value in v.facts[:MAX_FIELDS]:
        head = f"*{name}*\n"
        wrap = (lambda t: escape(code(t))) if untrusted(name) else escape
        fields.append({"type": "mrkdwn", "text": head + fit(value, FIELD_LIMIT - len(head), wrap)})
    out.append({"type": "section", "fields": fields})
    if v.cmdline:
        out.append(_section("Command line", v.cmdline))
    if v.ancestors:
        out.append(_section("Ancestors", v.ancestors))
    if v.evidence:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": _evidence(v.evidence)}})
    if v.history:
        out.append(_section("Load, last samples", v.history))
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(v.footer)}]})
    return out[:MAX_BLOCKS]


def payload(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": fit(plain_text(record, TEXT_LIMIT), TEXT_LIMIT, escape),
        "blocks": blocks(record),
        "unfurl_links": False,
        "unfurl_media": False,
    }


@register
class SlackSink(HttpSink):
    type = "slack"
    rollup = True
    default_rate = 1.0  # Slack: about one message per second per webhook

    def body(self, msg: Outbound) -> bytes:
        return to_json(payload(msg.record))
