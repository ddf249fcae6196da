"""Engine behaviour with small in-test collectors and detectors."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from sentinel import collectors, detectors
from sentinel.core import config
from sentinel.core.events import Event, FileChange, ProcExec, ProcExit
from sentinel.core.model import Ancestor, Category, Finding, Proc, Resolved, Severity
from sentinel.engine import Engine, health
from sentinel.ops import metrics
from sentinel.sinks import Sink


def make_proc(pid: int, ppid: int = 1, exe: str = "/tmp/xmrig", ancestors=()) -> Proc:
    return Proc(pid, ppid, "xmrig", exe, [exe], "root", 1000.0 + pid, list(ancestors))


class Recorder(Sink):
    type = "recorder"
    got: list[Finding]
    resolved: list[Finding]

    def __init__(self) -> None:  # not built from config
        self.name, self.min_severity = "recorder", Severity.INFO
        self.got, self.resolved = [], []

    def submit(self, finding: Finding) -> None:
        self.got.append(finding)

    def resolve(self, finding: Finding) -> None:
        self.resolved.append(finding)


class MinerDetector(detectors.Detector):
    name = "test-miner"
    events = (ProcExec,)

    def handle(self, event: Event) -> Iterable[Finding]:
        assert isinstance(event, ProcExec)
        if event.proc.name == "boom":
            raise RuntimeError("bad event")
        yield Finding(
            "miner.test", Category.MINER, Severity.HIGH, "miner", self.name, process=event.proc
        )


class Feeder(collectors.Collector):
    name = "feeder"
    script: list[Event] = []

    async def run(self) -> None:
        self.report(True)
        for ev in self.script:
            self.emit(ev)
        await asyncio.Event().wait()


class NoDevice(collectors.Collector):
    name = "nodevice"

    async def run(self) -> None:
        self.report(False, "no GPU on this box", severity="info")
        await asyncio.Event().wait()


class Crasher(collectors.Collector):
    name = "crasher"
    runs = 0

    async def run(self) -> None:
        Crasher.runs += 1
        raise OSError("netlink gone")


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    c = config.parse(
        f"[agent]\nstate_dir = '{tmp_path}'\ninterval = 0.1\n[log]\nstdout = false\n"
        "[metrics]\nenabled = false\n"
    )
    return c


NO_HTTP = "[metrics]\nenabled = false\n"


def patch_plugins(monkeypatch: pytest.MonkeyPatch, cols, dets) -> None:
    monkeypatch.setattr(collectors, "load_all", lambda: {c.name: c for c in cols})
    monkeypatch.setattr(detectors, "load_all", lambda: {d.name: d for d in dets})


async def run_until(engine: Engine, cond, timeout: float = 5.0) -> None:
    task = asyncio.create_task(engine.run())
    deadline = time.monotonic() + timeout
    try:
        while not cond():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)
    finally:
        engine.stop()
        assert await asyncio.wait_for(task, 5) == 0


async def test_dedup_incident_and_bad_event(cfg, monkeypatch, capsys) -> None:
    parent = make_proc(100)
    child = make_proc(101, 100, ancestors=[Ancestor(100, "xmrig", "/tmp/xmrig")])
    siblings = [make_proc(200 + i, 50) for i in range(20)]
    boom = make_proc(300)
    boom.name = "boom"
    Feeder.script = [
        ProcExec(time.time(), parent),
        ProcExec(time.time(), parent),  # same subject: dedup
        ProcExec(time.time(), child),  # descendant of an alerted process: one incident
        ProcExec(time.time(), boom),  # detector raises: logged, counted, engine goes on
        *(ProcExec(time.time(), p) for p in siblings),  # burst of same exe and parent
        ProcExit(time.time(), parent.pid, parent.start_time),
    ]
    patch_plugins(monkeypatch, [Feeder], [MinerDetector])
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)
    errors_before = metrics.detector_errors.labels("test-miner")._value.get()
    await run_until(engine, lambda: rec.resolved)
    pids = [f.process.pid for f in rec.got]
    assert pids == [100, 200]
    assert [f.process.pid for f in rec.resolved] == [100]
    assert metrics.detector_errors.labels("test-miner")._value.get() == errors_before + 1
    assert "sentinel: ready" in capsys.readouterr().err
    log = Path(cfg.alert_log)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # the log gets every finding but the exact repeat; folded ones name their incident
    assert [r["process"]["pid"] for r in records] == [100, 101, *(p.pid for p in siblings)]
    folded = {r["process"]["pid"]: r["evidence"].get("folded_into") for r in records}
    assert folded[100] is None and folded[200] is None
    assert folded[101] == {"incident": records[0]["id"], "count": 1}
    assert folded[219] == {"incident": records[2]["id"], "count": 19}
    assert records[0]["category"] == "miner" and records[0]["time"].endswith("Z")
    assert os.stat(log).st_mode & 0o777 == 0o600


async def test_crashing_collector_is_degraded_not_fatal(cfg, monkeypatch) -> None:
    monkeypatch.setattr("sentinel.engine.lifecycle.RESTART_DELAY", 0.05)
    Crasher.runs = 0
    patch_plugins(monkeypatch, [Crasher], [])
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)
    await run_until(engine, lambda: Crasher.runs >= 3)
    assert engine.health() == (False, "crasher: crashed: OSError: netlink gone")
    integrity = [f for f in rec.got if f.category == Category.INTEGRITY]
    assert len(integrity) == 1 and "netlink gone" in integrity[0].summary


async def test_resolved_from_detector_and_renotify_on_change(cfg, monkeypatch) -> None:
    patch_plugins(monkeypatch, [], [])
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)

    def load(sev: Severity) -> Finding:
        return Finding("load.cpu", Category.LOAD, sev, f"cpu {sev}", "load", subject="tree:7")

    engine.publish_all([load(Severity.MEDIUM), load(Severity.MEDIUM), load(Severity.HIGH)])
    engine.publish_all([Resolved("load.cpu", "tree:7")])
    assert [str(f.severity) for f in rec.got] == ["medium", "high"]
    assert len(rec.resolved) == 1
    engine.publish_all([load(Severity.HIGH)])  # fires again after it resolved
    assert len(rec.got) == 3


@pytest.fixture
async def reloadable(monkeypatch, tmp_path):
    """A running engine on a config file the test may rewrite; stopped afterwards."""
    patch_plugins(monkeypatch, [Feeder], [])
    Feeder.script = []
    path = tmp_path / "s.toml"
    path.write_text(f"[agent]\nstate_dir = '{tmp_path}'\n[log]\nstdout = false\n{NO_HTTP}")
    engine = Engine(config.load(path), config_path=str(path))
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(engine.ready.wait(), 5)
    yield engine, path
    engine.stop()
    assert await asyncio.wait_for(task, 5) == 0


async def test_reload_keeps_old_config_on_error(reloadable, tmp_path) -> None:
    engine, path = reloadable
    path.write_text("[agent]\nbogus = 1\n")
    assert await engine.reload() is False
    assert engine.cfg.agent.state_dir == str(tmp_path)
    path.write_text(f"[agent]\nstate_dir='{tmp_path}'\ninterval=3\n[log]\nstdout=false\n{NO_HTTP}")
    assert await engine.reload() is True
    assert engine.cfg.agent.interval == 3.0


async def test_collector_off_by_design_is_healthy(cfg, monkeypatch, capsys) -> None:
    patch_plugins(monkeypatch, [Feeder, NoDevice], [])
    Feeder.script = []
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)
    await run_until(engine, lambda: engine.ready.is_set())
    assert engine.health() == (True, "")
    assert "nodevice=off (no GPU on this box)" in capsys.readouterr().err
    assert [(f.rule, str(f.severity)) for f in rec.got] == [("integrity.collector_off", "info")]


async def test_incidents_end_with_the_process_and_differ_by_script(cfg, monkeypatch) -> None:
    patch_plugins(monkeypatch, [], [])
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)

    def found(p: Proc) -> Finding:
        return Finding("miner.test", Category.MINER, Severity.HIGH, "m", "t", process=p)

    parent = make_proc(100)
    engine.publish(found(parent))
    child = make_proc(101, 100, ancestors=[Ancestor(100, "xmrig", "/tmp/xmrig")])
    assert engine.publish(found(child)) is False  # folded while the parent lives
    engine._handle(ProcExit(time.time(), parent.pid, parent.start_time))
    orphan = make_proc(102, 100, ancestors=[Ancestor(100, "xmrig", "/tmp/xmrig")])
    assert engine.publish(found(orphan)) is True  # the parent's incident ended with it
    a, b = make_proc(300, 7, "/usr/bin/python3"), make_proc(301, 7, "/usr/bin/python3")
    a.cmdline, b.cmdline = ["python3", "/tmp/a.py"], ["python3", "/tmp/b.py"]
    assert engine.publish(found(a)) is True
    assert engine.publish(found(b)) is True  # another script is another story
    assert [f.process.pid for f in rec.got] == [100, 102, 300, 301]


class SlowScanner(detectors.Detector):
    name = "test-scan"
    events = (FileChange,)
    blocking = True

    def accepts(self, event: Event) -> bool:
        return isinstance(event, FileChange) and not event.path.endswith(".junk")

    def handle(self, event: Event) -> Iterable[Finding]:
        assert isinstance(event, FileChange)
        time.sleep(0.001)
        yield Finding(
            "file.test", Category.MINER, Severity.HIGH, "hit", self.name, subject=event.path
        )


async def test_flood_of_unwanted_events_cannot_crowd_out_a_scan(cfg, monkeypatch) -> None:
    junk = [FileChange(time.time(), f"/x/{i}.junk", "created", "drop") for i in range(30000)]
    Feeder.script = [*junk, FileChange(time.time(), "/x/miner", "created", "drop")]
    cfg.agent.queue_size = 40000
    patch_plugins(monkeypatch, [Feeder], [SlowScanner])
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)
    dropped = metrics.events_dropped.labels("detector.test-scan")._value.get()
    await run_until(engine, lambda: rec.got, timeout=20)
    assert [f.subject for f in rec.got] == ["/x/miner"]
    assert metrics.events_dropped.labels("detector.test-scan")._value.get() == dropped


async def test_reload_with_a_bad_sink_replaces_nothing(reloadable, tmp_path) -> None:
    engine, path = reloadable
    before = (engine.cfg, engine.ctx, engine.sinks, engine.collector_tasks)
    path.write_text(
        f"[agent]\nstate_dir = '{tmp_path}'\n{NO_HTTP}"
        "[[sinks]]\ntype = 'webhook'\nurl = 'http://127.0.0.1:9/x'\nsecret = 'not-whsec'\n"
    )
    results = await asyncio.gather(engine.reload(), engine.reload())
    assert results == [False, False]
    assert (engine.cfg, engine.ctx, engine.sinks, engine.collector_tasks) == before
    assert all(t is before[3][0] for t in engine.collector_tasks)


def test_dropped_events_are_one_finding_per_period_and_degrade_health() -> None:
    drops = health.Drops()
    assert drops.check(1000.0) == (True, "")
    for _ in range(3):
        drops.add("ProcExec", 1000.0)
    drops.add("ProcExit", 1000.0)
    first = drops.finding(1000.0)
    assert first is not None and first.severity == Severity.MEDIUM
    assert first.category == Category.INTEGRITY and first.evidence["dropped"] == {
        "ProcExec": 3,
        "ProcExit": 1,
    }
    drops.add("ProcExec", 1001.0)
    assert drops.finding(1001.0) is None  # rate-limited; counted for the next one
    later = drops.finding(1000.0 + health.DROP_REPORT_EVERY)
    assert later is not None and later.evidence == {"dropped": {"ProcExec": 1}, "dropped_total": 5}
    assert drops.check(1002.0)[0] is False
    assert drops.check(1001.0 + health.DROP_HEALTH_HOLD) == (True, "")


async def test_a_more_severe_finding_never_folds_into_a_milder_incident(cfg, monkeypatch) -> None:
    """`ssh -R` to a local port (low) then, from the same shell, to the outside (high): the
    high one is the same rule, parent, program and argv[1], and must still be sent."""
    patch_plugins(monkeypatch, [], [])
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)

    def found(p: Proc, sev: Severity) -> Finding:
        return Finding("tunnel.ssh_reverse", Category.TUNNEL, sev, f"ssh -R {sev}", "t", process=p)

    local, out = make_proc(400, 9, "/usr/bin/ssh"), make_proc(401, 9, "/usr/bin/ssh")
    local.cmdline, out.cmdline = ["ssh", "-R", "9:localhost:22", "localhost"], ["ssh", "-R", "x"]
    assert engine.publish(found(local, Severity.LOW)) is True
    assert engine.publish(found(out, Severity.HIGH)) is True  # a sibling, but worse
    child = make_proc(402, 401, "/usr/bin/ssh", ancestors=[Ancestor(401, "ssh", "/usr/bin/ssh")])
    assert engine.publish(found(child, Severity.MEDIUM)) is False  # milder: folded
    parent = make_proc(500, 9, "/usr/bin/ssh")
    engine.publish(found(parent, Severity.LOW))
    kid = make_proc(501, 500, "/usr/bin/ssh", ancestors=[Ancestor(500, "ssh", "/usr/bin/ssh")])
    assert engine.publish(found(kid, Severity.CRITICAL)) is True  # a descendant, but worse
    assert [f.process.pid for f in rec.got] == [400, 401, 500, 501]
