"""A real Alertmanager (Debian prometheus-alertmanager) on loopback, fed by the agent's sink."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from receiver import Receiver
from sinkkit import cfg_for, counter, free_port, miner, table

from sentinel import collectors, detectors
from sentinel.core.model import Category, FileFacts, Finding, Resolved, Severity
from sentinel.engine import Engine
from sentinel.ops import metrics

BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
pytestmark = pytest.mark.skipif(
    not os.access(BINARY, os.X_OK), reason="prometheus-alertmanager not installed (scripts/test)"
)

AM_CONFIG = """\
route:
  receiver: hook
  group_by: [alertname, host, subject]
  group_wait: 100ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


@pytest.fixture
async def alertmanager(tmp_path: Path):
    """(Alertmanager base URL, the receiver its webhook posts to); killed by pid after."""
    hook = await Receiver().start()
    conf = tmp_path / "am.yml"
    conf.write_text(AM_CONFIG.format(url=hook.url("/am")))
    port = free_port()
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={conf}",
            f"--storage.path={tmp_path / 'am-data'}",
            "--cluster.listen-address=",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    async with http.get(f"{base}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "alertmanager did not become ready"
                await asyncio.sleep(0.1)
        yield base, hook
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        await hook.stop()


def notifications(hook: Receiver, status: str, subject: str) -> list[dict]:
    """Alerts with `status` for `subject` in what Alertmanager forwarded so far."""
    return [
        alert
        for req in hook.requests
        for alert in req.json()["alerts"]
        if alert["status"] == status and alert["labels"].get("subject") == subject
    ]


async def test_alert_fires_resends_and_resolves(tmp_path, monkeypatch, alertmanager) -> None:
    base, hook = alertmanager
    monkeypatch.setattr(collectors, "load_all", lambda: {})
    monkeypatch.setattr(detectors, "load_all", lambda: {})
    cfg = cfg_for(
        tmp_path, table("alertmanager", base, "am", resend_interval=0.5, resolve_after=1.5)
    )
    engine = Engine(cfg)
    task = asyncio.create_task(engine.run())
    proc_finding = miner(5, severity=Severity.CRITICAL)
    dropped = Finding(
        rule="drop.executable",
        category=Category.PERSISTENCE,
        severity=Severity.MEDIUM,
        summary="new executable in /tmp",
        detector="files",
        file=FileFacts("/tmp/.x/payload", None, 10),
    )
    try:
        await asyncio.wait_for(engine.ready.wait(), 5)
        assert engine.publish(proc_finding) and engine.publish(dropped)
        subject = proc_finding.subject
        await hook.wait_for(lambda: notifications(hook, "firing", subject), timeout=15)

        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v2/alerts") as resp:
            alerts = await resp.json()
        shown = [a for a in alerts if a["labels"]["subject"] == subject]
        assert len(shown) == 1 and shown[0]["status"]["state"] == "active"
        labels = shown[0]["labels"]
        assert labels == {
            "alertname": "miner.process_name",
            "rule": "miner.process_name",
            "host": proc_finding.host,
            "severity": "critical",
            "category": "miner",
            "subject": subject,
        }
        annotations = shown[0]["annotations"]
        assert annotations["finding_id"] == proc_finding.id
        assert "/tmp/.x/xmrig -o 127.0.0.1:3333" in annotations["description"]

        # re-sent while firing: Alertmanager keeps getting it every resend_interval
        sent = counter(metrics.deliveries, "am")
        await hook.wait_for(lambda: counter(metrics.deliveries, "am") >= sent + 2, timeout=10)
        assert not notifications(hook, "resolved", subject)

        # the detector says the condition ended: the engine calls resolve, AM forwards it
        engine.publish_all([Resolved(proc_finding.rule, subject)])
        await hook.wait_for(lambda: notifications(hook, "resolved", subject), timeout=15)
        # the dropped file has no process to end: resolved resolve_after seconds after firing
        await hook.wait_for(lambda: notifications(hook, "resolved", dropped.subject), timeout=15)
    finally:
        engine.stop()
        await asyncio.wait_for(task, 10)
    resolved = notifications(hook, "resolved", subject)[0]
    assert resolved["labels"]["severity"] == "critical"
    assert resolved["endsAt"] >= resolved["startsAt"]
    assert notifications(hook, "firing", dropped.subject)


async def test_heartbeat_fires_while_the_agent_runs_and_ends_when_it_dies(
    tmp_path, monkeypatch, alertmanager
) -> None:
    """The dead man's switch: integrity.heartbeat reaches Alertmanager whatever the sink's
    min_severity, is re-sent and never resolved while the agent runs; once the agent is gone
    its lease (endsAt) runs out and Alertmanager resolves it by itself."""
    base, hook = alertmanager
    monkeypatch.setattr(collectors, "load_all", lambda: {})
    monkeypatch.setattr(detectors, "load_all", lambda: {})
    am = table("alertmanager", base, "am", resend_interval=0.5, resolve_after=1.0)
    cfg = cfg_for(tmp_path, am.replace("min_severity = 'info'", "min_severity = 'high'"))
    engine = Engine(cfg)
    task = asyncio.create_task(engine.run())
    try:
        await hook.wait_for(lambda: notifications(hook, "firing", "heartbeat"), timeout=15)
        sent = counter(metrics.deliveries, "am")
        await hook.wait_for(lambda: counter(metrics.deliveries, "am") >= sent + 3, timeout=10)
        assert not notifications(hook, "resolved", "heartbeat")  # past resolve_after
        (alert,) = notifications(hook, "firing", "heartbeat")[:1]
        assert alert["labels"]["alertname"] == "integrity.heartbeat"
        assert alert["labels"]["severity"] == "info"
    finally:
        engine.stop()
        await asyncio.wait_for(task, 10)
    await hook.wait_for(lambda: notifications(hook, "resolved", "heartbeat"), timeout=20)
