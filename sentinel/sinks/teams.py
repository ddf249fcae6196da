"""Microsoft Teams through a Workflows ("When a Teams webhook request is received") URL.

The message carries one Adaptive Card (1.4). Text from the watched box goes into
RichTextBlock TextRuns, which Teams shows as plain text (no Markdown, no links). The whole
request body stays within 28 KB: fields are cut further until it fits.
"""

from __future__ import annotations

from typing import Any

from sentinel.sinks import register
from sentinel.sinks._format import View, view
from sentinel.sinks._http.delivery import HttpSink, Outbound, to_json

MAX_BYTES = 28 * 1024
FIELD_LIMITS = (4000, 2000, 1000, 500, 250, 120, 60)
COLORS = {"critical": "Attention", "high": "Attention", "medium": "Warning", "low": "Warning"}


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _rich(*runs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs), **extra}


def _evidence(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        _rich(_run(f"{k}: ", weight="Bolder"), _run(val, fontType="Monospace"), spacing="None")
        for k, val in items
    ]


def card(v: View, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    """An Adaptive Card for the alert's view with the given evidence elements."""
    color = COLORS.get(v.severity, "Accent")
    body: list[dict[str, Any]] = [
        _rich(_run(v.title, weight="Bolder", size="Medium", color=color)),
        _rich(_run(v.summary)),
    ]
    body += [_rich(_run(f"{name}: ", weight="Bolder"), _run(value)) for name, value in v.facts]
    for label, value in (
        ("Command line", v.cmdline),
        ("Ancestors", v.ancestors),
        ("Load, last samples", v.history),
    ):
        if value:
            body.append(_rich(_run(label, weight="Bolder")))
            body.append(_rich(_run(value, fontType="Monospace"), spacing="None"))
    if evidence:
        body.append(_rich(_run("Evidence", weight="Bolder")))
        body += evidence
    body.append(_rich(_run(v.footer, isSubtle=True, size="Small")))
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }


def message(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def encode(record: dict[str, Any]) -> bytes:
    """The request body within 28 KB: fields cut shorter, then evidence items left out."""
    for limit in FIELD_LIMITS:
        v = view(record, limit)
        items = _evidence(v.evidence)
        data = to_json(message(card(v, items)))
        if len(data) <= MAX_BYTES:
            return data
        bare = len(to_json(message(card(v, _evidence([("evidence", "x" * 80)])))))
        if bare > MAX_BYTES:
            continue
        room, kept = MAX_BYTES - bare, 0
        for item in items:
            room -= len(to_json(item)) + 1
            if room < 0:
                break
            kept += 1
        if kept >= len(items) // 4:  # else cut the fields shorter and try again
            note = ("evidence", f"{len(items) - kept} more items in the alert log")
            return to_json(message(card(v, [*items[:kept], *_evidence([note])])))
    v = view(dict(record, evidence={}), FIELD_LIMITS[-1])
    return to_json(message(card(v, _evidence([("evidence", "see the alert log")]))))


@register
class TeamsSink(HttpSink):
    type = "teams"
    rollup = True
    default_rate = 4.0  # Teams connectors: about 4 requests per second
    default_burst = 4

    def body(self, msg: Outbound) -> bytes:
        return encode(msg.record)
