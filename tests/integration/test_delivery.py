"""HTTP sinks against real aiohttp receivers on 127.0.0.1: signatures, retries, spool, logs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import stat
import sys
import time
from email.utils import formatdate

import pytest
from receiver import Receiver, Reply, verify_standard_webhook
from sinkkit import KEY, SECRET, build, cfg_for, counter, free_port, miner, table

from sentinel import collectors, detectors
from sentinel.engine import Engine
from sentinel.ops import metrics
from sentinel.sinks._http.delivery import HttpSink, RateLimiter, parse_retry_after


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_webhook_signed_retried_and_same_id(tmp_path, receiver) -> None:
    receiver.check = lambda req: verify_standard_webhook(req, KEY)
    receiver.script.extend(
        [
            Reply(429, headers={"Retry-After": "1"}),
            Reply(503),
            Reply(200, delay=1.0),  # answers after the client's 0.3 s timeout
        ]
    )
    sink = build(
        cfg_for(tmp_path, table("webhook", receiver.url(), "hook", secret=SECRET, timeout=0.3))
    )
    before = {
        r: counter(metrics.delivery_failures, "hook", r)
        for r in ("http_429", "http_503", "transport")
    }
    delivered = counter(metrics.deliveries, "hook")
    await sink.start()
    try:
        finding = miner()
        sink.submit(finding)
        files = list(sink.spool.dir.iterdir())
        assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(sink.spool.dir.stat().st_mode) == 0o700
        await receiver.wait_for(lambda: len(sink.spool) == 0, timeout=10)
    finally:
        await sink.close()
    reqs = receiver.requests
    assert [r.answered for r in reqs] == [429, 503, 200, 200]
    assert receiver.problems == []
    assert {r.headers["webhook-id"] for r in reqs} == {finding.id}
    assert len({r.body for r in reqs}) == 1
    assert reqs[0].json() == json.loads(json.dumps(finding.to_record()))
    assert reqs[1].time - reqs[0].time >= 0.9  # Retry-After: 1 was honoured
    for reason in before:
        assert counter(metrics.delivery_failures, "hook", reason) == before[reason] + 1
    assert counter(metrics.deliveries, "hook") == delivered + 1
    assert list(sink.spool.dir.iterdir()) == []


async def test_client_errors_are_not_retried(tmp_path, receiver) -> None:
    receiver.script.append(Reply(400, body="invalid_payload"))
    sink = build(cfg_for(tmp_path, table("webhook", receiver.url(), "hook4")))
    rejected = counter(metrics.delivery_failures, "hook4", "rejected_400")
    await sink.start()
    try:
        sink.submit(miner(1))
        sink.submit(miner(2))
        await receiver.wait_for(lambda: len(receiver.requests) == 2 and not sink.spool.entries)
        await asyncio.sleep(0.2)  # a retry would arrive now
    finally:
        await sink.close()
    assert [r.answered for r in receiver.requests] == [400, 200]
    assert counter(metrics.delivery_failures, "hook4", "rejected_400") == rejected + 1


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.25") == 0.25
    in_30 = formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(in_30) <= 30
    assert parse_retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("999999") == 3600.0


async def test_rate_limiter_spaces_messages() -> None:
    limiter = RateLimiter(rate=20, burst=2)
    start = time.monotonic()
    for _ in range(6):
        await limiter.acquire()
    # two go at once, the other four wait 1/20 s each
    assert time.monotonic() - start >= 4 / 20 * 0.9
    assert RateLimiter(0, 1).rate == 0


async def test_spool_caps_drop_oldest_and_replay_after_restart(tmp_path, receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    cfg = cfg_for(tmp_path, table("webhook", dead, "spooled", spool_max_count=3))
    first = build(cfg)  # never started: as if the agent died before delivering anything
    dropped = counter(metrics.spool_dropped, "spooled", "count")
    sent = [miner(i) for i in range(5)]
    for f in sent:
        first.submit(f)
    assert counter(metrics.spool_dropped, "spooled", "count") == dropped + 2
    assert metrics.spool_depth.labels("spooled")._value.get() == 3
    spool_dir = first.spool.dir
    assert len(list(spool_dir.glob("*.json"))) == 3
    (spool_dir / "00000000000000000000-000000-junk-firing.json").write_text("{not json")
    (spool_dir / ".half-written.json.tmp").write_text("{")

    cfg2 = cfg_for(tmp_path, table("webhook", receiver.url(), "spooled"))
    second = build(cfg2)
    await second.start()
    try:
        await receiver.wait_for(lambda: len(receiver.requests) == 3)
        await receiver.wait_for(lambda: not second.spool.entries)
    finally:
        await second.close()
    assert [r.json()["id"] for r in receiver.requests] == [f.id for f in sent[2:]]
    assert sorted(p.name for p in spool_dir.iterdir()) == [
        "00000000000000000000-000000-junk-firing.bad"
    ]


def test_spool_byte_and_age_caps(tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    cfg = cfg_for(tmp_path, table("webhook", dead, "bytes", spool_max_bytes=12000))
    sink = build(cfg)
    before = counter(metrics.spool_dropped, "bytes", "bytes")
    big = [miner(i, evidence={"blob": "x" * 5000}) for i in range(4)]
    for f in big:
        sink.submit(f)
    assert len(sink.spool) == 2 and sink.spool.bytes <= 12000
    assert counter(metrics.spool_dropped, "bytes", "bytes") == before + 2
    kept = " ".join(sink.spool.entries)
    assert big[0].id not in kept and big[3].id in kept

    cfg = cfg_for(tmp_path, table("webhook", dead, "aged", spool_max_age=0.2))
    sink = build(cfg)
    aged = counter(metrics.spool_dropped, "aged", "age")
    old = miner(1)
    sink.submit(old)
    time.sleep(0.3)
    sink.submit(miner(2))
    assert len(sink.spool) == 1 and old.id not in next(iter(sink.spool.entries))
    assert counter(metrics.spool_dropped, "aged", "age") == aged + 1


async def test_logs_never_show_url_or_secret(tmp_path, receiver, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = secrets.token_hex(16)
    url = receiver.url(f"/services/T0TEST/B0TEST/{token}")
    dead = f"http://user:{token}@127.0.0.1:{free_port()}/hooks/{token}?sig={token}"
    # the endpoint echoes what it was sent to, a common thing for error pages to do
    receiver.script.extend(
        [
            Reply(500, body=f"upstream failed for {url}"),
            Reply(403, body=f"bad token {token}"),
        ]
    )
    cfg = cfg_for(
        tmp_path,
        table("slack", url, "chat", rate=0),
        table("webhook", dead, "dead", secret=SECRET, headers={"Authorization": f"Bearer {token}"}),
    )
    chat, down = build(cfg, 0), build(cfg, 1)
    await chat.start()
    await down.start()
    try:
        chat.submit(miner(1))
        down.submit(miner(2))
        await receiver.wait_for(lambda: len(receiver.requests) == 2 and not chat.spool.entries)
        await receiver.wait_for(lambda: down.streak >= 2)
    finally:
        await chat.close()
        await down.close()
    text = caplog.text
    assert "delivery failed" in text and "refused alert" in text and "<redacted>" in text
    for secret in (token, SECRET, url, dead, base64.b64encode(KEY).decode()):
        assert secret not in text


async def test_dead_sink_never_delays_another(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(collectors, "load_all", lambda: {})
    monkeypatch.setattr(detectors, "load_all", lambda: {})
    slow = await Receiver(default=Reply(200, delay=3)).start()
    fast = await Receiver().start()
    cfg = cfg_for(
        tmp_path,
        table("webhook", slow.url(), "slow", timeout=30),
        table("webhook", fast.url(), "fast"),
    )
    engine = Engine(cfg)
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(engine.ready.wait(), 5)
        for i in range(20):
            assert engine.publish(miner(i))
        await fast.wait_for(lambda: len(fast.requests) == 20, timeout=10)
        slow_sink = next(s for s in engine.sinks if s.name == "slow")
        assert isinstance(slow_sink, HttpSink)
        # the slow endpoint still holds its first request; the other 19 wait on disk
        assert len(slow.requests) == 1 and len(slow_sink.spool) == 20
    finally:
        engine.stop()
        await asyncio.wait_for(task, 10)
        await fast.stop()
        await slow.stop()


async def test_test_alert_command_reports_each_sink(tmp_path, receiver) -> None:
    bad = await Receiver(default=Reply(404, body="no_service")).start()
    token = secrets.token_hex(16)
    path = tmp_path / "sentinel.toml"
    path.write_text(
        f"[agent]\nstate_dir = '{tmp_path}'\n"
        + table("webhook", receiver.url(), "ops-hook", secret=SECRET)
        + table("slack", bad.url(f"/services/{token}"), "ops-chat")
    )
    try:
        out, code = await run_cli("test-alert", "-c", str(path))
        assert code == 1, out
        assert "ops-hook (webhook): delivered: HTTP 200 OK" in out
        assert "ops-chat (slack): FAILED: HTTP 404 Not Found: no_service" in out
        assert token not in out
        body = receiver.requests[0].json()
        assert body["rule"] == "sentinel.test_alert" and "TEST ALERT" in body["summary"]
        assert verify_standard_webhook(receiver.requests[0], KEY) == ""
        out, code = await run_cli("test-alert", "-c", str(path), "--sink", "ops-hook")
        assert code == 0 and "ops-chat" not in out
        out, code = await run_cli("test-alert", "-c", str(path), "--sink", "nope")
        assert code == 2 and "ops-hook, ops-chat" in out
        assert len(receiver.requests) == 2 and len(bad.requests) == 1
        assert list((tmp_path / "spool").glob("*/*.json")) == []
    finally:
        await bad.stop()


async def run_cli(*args: str) -> tuple[str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sentinel.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out.decode(), proc.returncode or 0
