"""Slack, Discord and Teams payloads checked by real receivers for shape, limits and escaping."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from receiver import Receiver, Reply, Request
from sinkkit import build, cfg_for, miner, table

from sentinel.core.model import Ancestor, Category, Connection, FileFacts, Finding, Proc, Severity
from sentinel.sinks._format import BARS, GRAVE, cut, plain_text, sparkline, view

LOAD_HISTORY = [0.05 + 0.9 * (i / 59) for i in range(60)]


def hostile() -> Finding:
    """Everything an agent under test controls, made as long and tricky as possible."""
    proc = Proc(
        31337,
        1,
        "xmrig <!channel>",
        "/dev/shm/.x/xmrig",
        ["/dev/shm/.x/xmrig", "--pass=`id`", "@everyone <!here>", "A" * 100_000],
        "agent",
        1234.5,
        [Ancestor(1000 + i, f"sh{i}", "/bin/sh") for i in range(300)],
    )
    evidence: dict[str, Any] = {f"key{i}": "V" * 3000 for i in range(200)}
    evidence["history"] = [random.random() for _ in range(360)] + [math.nan, "x"]
    return Finding(
        rule="miner.process_name",
        category=Category.MINER,
        severity=Severity.CRITICAL,
        summary="miner <!channel> @everyone [click](http://evil.invalid/) " + "S" * 10_000,
        detector="process",
        process=proc,
        file=FileFacts("/dev/shm/.x/" + "d" * 5000, "ab" * 32, 123),
        connection=Connection("10.0.0.2:5555", "127.0.0.1", 3333, "tcp", "pool.example.invalid"),
        evidence=evidence,
    )


def load_finding() -> Finding:
    return Finding(
        rule="load.cpu_sustained",
        category=Category.LOAD,
        severity=Severity.MEDIUM,
        summary="sustained CPU no declared job explains",
        detector="load",
        evidence={"history": LOAD_HISTORY, "cpu": 0.93},
        subject="tree:31337",
    )


def slack_problems(req: Request) -> str:
    doc = req.json()
    problems = []
    if not isinstance(doc.get("text"), str) or not 0 < len(doc["text"]) <= 4000:
        problems.append("text missing or over 4000")
    blocks = doc.get("blocks", [])
    if not 0 < len(blocks) <= 50:
        problems.append(f"{len(blocks)} blocks")
    texts = [doc["text"]]
    for b in blocks:
        if b["type"] == "header":
            t = b["text"]
            if t["type"] != "plain_text" or not 0 < len(t["text"]) <= 150:
                problems.append("header")
        elif b["type"] == "section":
            if "text" in b:
                if b["text"]["type"] != "mrkdwn" or not 0 < len(b["text"]["text"]) <= 3000:
                    problems.append(f"section text {len(b['text']['text'])}")
                texts.append(b["text"]["text"])
            fields = b.get("fields", [])
            if len(fields) > 10 or any(not 0 < len(f["text"]) <= 2000 for f in fields):
                problems.append("fields")
            texts += [f["text"] for f in fields]
            if "text" not in b and not fields:
                problems.append("empty section")
        elif b["type"] == "context":
            els = b["elements"]
            if not 0 < len(els) <= 10 or any(len(e["text"]) > 2000 for e in els):
                problems.append("context")
            texts += [e["text"] for e in els]
        else:
            problems.append(f"unexpected block {b['type']}")
    for t in texts:
        if "<!" in t or "<http" in t:
            problems.append("unescaped Slack control sequence")
    return "; ".join(problems)


async def test_slack_payload_within_limits_and_escaped(tmp_path) -> None:
    rx = await Receiver(default=Reply(200, body="ok")).start()
    rx.check = slack_problems
    sink = build(cfg_for(tmp_path, table("slack", rx.url(), "chat", rate=0)))
    await sink.start()
    normal, evil, load = miner(7), hostile(), load_finding()
    try:
        for n, f in enumerate((normal, evil, load), 1):  # one at a time: the queue would
            sink.submit(f)  # otherwise send the most severe first
            await rx.wait_for(lambda n=n: len(rx.requests) == n)
    finally:
        await sink.close()
        await rx.stop()
    assert rx.problems == []
    first, second, third = (r.json() for r in rx.requests)
    blob = json.dumps(first["blocks"], ensure_ascii=False)
    assert "/tmp/.x/xmrig -o 127.0.0.1:3333" in blob and "pid 4007 xmrig" in blob
    assert "Command line: `/tmp/.x/xmrig -o 127.0.0.1:3333`" in first["text"]  # Mattermost
    assert "&lt;!channel&gt;" in second["text"]
    assert f"{GRAVE}id{GRAVE}" in json.dumps(second, ensure_ascii=False)  # no code-span escape
    assert "…" in json.dumps(second["blocks"], ensure_ascii=False)  # cut, not rejected
    bars = sparkline(LOAD_HISTORY)
    assert bars in third["text"] and bars in json.dumps(third["blocks"], ensure_ascii=False)
    assert bars[0] == BARS[0] and bars[-1] == BARS[-1]


def discord_problems(req: Request) -> str:
    doc = req.json()
    problems = []
    if doc.get("allowed_mentions") != {"parse": []}:
        problems.append("allowed_mentions not empty")
    if len(doc.get("content", "")) > 2000:
        problems.append("content")
    embeds = doc.get("embeds", [])
    if not 0 < len(embeds) <= 10:
        problems.append("embeds")
    total = 0
    for e in embeds:
        fields = e.get("fields", [])
        checks = [
            len(e.get("title", "")) <= 256,
            len(e.get("description", "")) <= 4096,
            len(fields) <= 25,
            all(0 < len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in fields),
            len(e.get("footer", {}).get("text", "")) <= 2048,
            isinstance(e.get("color", 0), int),
        ]
        if not all(checks):
            problems.append(f"embed limits {checks}")
        total += len(e.get("title", "")) + len(e.get("description", ""))
        total += len(e.get("footer", {}).get("text", ""))
        total += sum(len(f["name"]) + len(f["value"]) for f in fields)
        if "[click](" in e.get("description", "") + e.get("title", ""):
            problems.append("Markdown link not escaped")
    if total > 6000:
        problems.append(f"embeds total {total}")
    return "; ".join(problems)


async def test_discord_embed_limits_mentions_and_json_retry_after(tmp_path) -> None:
    rx = await Receiver(default=Reply(204)).start()
    rx.check = discord_problems
    rx.script.append(
        Reply(
            429,
            body='{"message": "rate limited", "retry_after": 0.4, "global": false}',
            headers={"Retry-After": "30", "Content-Type": "application/json"},
        )
    )
    sink = build(cfg_for(tmp_path, table("discord", rx.url(), "dc")))
    assert sink.limiter.rate == 2.5 and sink.limiter.burst == 5
    await sink.start()
    try:
        evil, normal = hostile(), miner(3)
        sink.submit(evil)
        sink.submit(normal)
        await rx.wait_for(lambda: len(rx.requests) == 3 and not sink.spool.entries)
    finally:
        await sink.close()
        await rx.stop()
    assert rx.problems == []
    reqs = rx.requests
    assert [r.answered for r in reqs] == [429, 204, 204]
    assert 0.35 <= reqs[1].time - reqs[0].time < 10  # the body's 0.4 s, not the header's 30 s
    assert reqs[0].body == reqs[1].body
    embed = reqs[2].json()["embeds"][0]
    assert "`/tmp/.x/xmrig -o 127.0.0.1:3333`" in embed["description"]
    assert {"name": "User", "value": "`agent`", "inline": True} in embed["fields"]


def teams_problems(req: Request) -> str:
    if len(req.body) > 28 * 1024:
        return f"body {len(req.body)} bytes"
    doc = req.json()
    att = doc["attachments"]
    if doc.get("type") != "message" or len(att) != 1:
        return "not a message with one attachment"
    if att[0]["contentType"] != "application/vnd.microsoft.card.adaptive":
        return "not an Adaptive Card"
    card = att[0]["content"]
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.4":
        return "card type/version"
    for el in card["body"]:
        # Markdown-capable elements would let an alert's text inject links
        if el["type"] != "RichTextBlock" or any(i["type"] != "TextRun" for i in el["inlines"]):
            return f"element {el['type']}"
    return ""


async def test_teams_card_within_28kb(tmp_path) -> None:
    rx = await Receiver(default=Reply(202)).start()
    rx.check = teams_problems
    sink = build(cfg_for(tmp_path, table("teams", rx.url(), "teams", rate=0)))
    assert build(cfg_for(tmp_path, table("teams", rx.url()))).limiter.rate == 4.0
    await sink.start()
    try:
        for f in (hostile(), miner(2), load_finding()):
            sink.submit(f)
        await rx.wait_for(lambda: len(rx.requests) == 3 and not sink.spool.entries)
    finally:
        await sink.close()
        await rx.stop()
    assert rx.problems == []
    runs = [
        i["text"]
        for el in rx.requests[1].json()["attachments"][0]["content"]["body"]
        for i in el["inlines"]
    ]
    assert "/tmp/.x/xmrig -o 127.0.0.1:3333" in runs and "systemd(1)" in runs
    assert len(rx.requests[0].body) > 20 * 1024  # filled close to the limit, then cut
    assert sparkline(LOAD_HISTORY) in json.dumps(rx.requests[2].json(), ensure_ascii=False)


def test_format_helpers() -> None:
    assert sparkline(range(8)) == BARS
    assert sparkline([2, 2, 2]) == BARS[3] * 3
    assert sparkline([1, "x", math.inf, None, 3]) == BARS[0] + BARS[7]
    assert sparkline([]) == ""
    assert cut("abcdef", 4) == "abc…" and cut("abc", 4) == "abc" and cut("abc", 0) == ""
    v = view({"rule": "sentinel.test_alert", "summary": "hi", "severity": "info"})
    assert v.test and "[TEST]" in v.title and v.cmdline == "" and v.facts[0] == ("Severity", "info")
    text = plain_text(miner(1).to_record(), 10_000)
    assert "Ancestors: `systemd(1)`" in text and "- matched: `xmrig`" in text
    assert len(plain_text(hostile().to_record(), 500)) == 500
