"""The GPU collector on the scripted fake backend and on the real NVML library where it can
run, and the load detector on GPU samples through the engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from detach import detach

from sentinel import collectors, detectors
from sentinel.collectors.gpu.backend import FakeBackend, GpuUnavailable, NvmlBackend
from sentinel.collectors.gpu.collector import GpuCollector
from sentinel.core import config
from sentinel.core.context import Context
from sentinel.core.events import CollectorState, Event, GpuSample
from sentinel.core.model import Finding, Severity
from sentinel.detectors.load.detector import LoadDetector
from sentinel.engine import Engine
from sentinel.ops import metrics
from sentinel.rules import intel
from sentinel.sinks import Sink


def gpu_config(tmp_path: Path, script: dict[str, Any] | None, extra: str = "") -> config.Config:
    toml = "[gpu]\ninterval = 0.05\ntimeout = 0.3\n"
    if script is not None:
        path = tmp_path / "gpu-script.json"
        path.write_text(json.dumps(script))
        toml += f"backend = 'fake'\nscript = '{path}'\n"
    return config.parse(toml + extra)


def idle_process(procs: list[subprocess.Popen], tmp_path: Path, name: str) -> int:
    """A real process that only sleeps, started from a script called `name`."""
    path = tmp_path / name
    path.write_text("import time\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, str(path)])
    procs.append(p)
    return p.pid


def detached_idle(pids: list[int], tmp_path: Path, name: str) -> int:
    """As idle_process, but re-parented away from this test process: an engine run in
    here never judges its own descendants."""
    path = tmp_path / name
    path.write_text("import time\ntime.sleep(60)\n")
    pids.append(detach([sys.executable, str(path)]))
    return pids[-1]


async def run_collector(
    cfg: config.Config, until: Callable[[list[Event]], bool], timeout: float = 10.0
) -> tuple[GpuCollector, list[Event]]:
    """Run the collector until `until(events)` or its run() returns; it must not crash."""
    events: list[Event] = []
    collector = GpuCollector(Context(cfg, intel.load()), events.append)
    task = asyncio.create_task(collector.run())
    deadline = time.monotonic() + timeout
    while not until(events) and not task.done():
        assert time.monotonic() < deadline, f"not met in {timeout}s: {events[-3:]}"
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # raises if the collector crashed
    else:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return collector, events


def samples(events: list[Event]) -> list[GpuSample]:
    return [e for e in events if isinstance(e, GpuSample)]


def states(events: list[Event]) -> list[CollectorState]:
    return [e for e in events if isinstance(e, CollectorState)]


async def test_fake_trace_devices_processes_and_last_seen(tmp_path, procs) -> None:
    miner = idle_process(procs, tmp_path, "t-rex-gpu.py")
    idle = {"util_sm": 3, "util_mem": 0, "mem_used": 5e8, "power_w": 60, "temp_c": 35}
    busy = {**idle, "util_sm": 97, "util_mem": 41, "mem_used": 3.5e9, "power_w": 250}
    script = {
        "devices": [{"uuid": "GPU-fake-0", "name": "Fake H100", "mem_total": 8e10}],
        "steps": [
            {"repeat": 3, "devices": [idle]},
            {"devices": [busy], "processes": [{"pid": miner, "sm_util": 95, "mem_used": 3e9}]},
        ],
    }
    collector, events = await run_collector(
        gpu_config(tmp_path, script), lambda ev: len(samples(ev)) >= 6
    )
    first, last = samples(events)[0], samples(events)[-1]
    assert first.devices[0].util_sm == 3.0 and first.processes == []
    dev = last.devices[0]
    assert (dev.uuid, dev.name, dev.util_sm, dev.util_mem) == ("GPU-fake-0", "Fake H100", 97, 41)
    assert (dev.mem_used, dev.mem_total, dev.power_w) == (3_500_000_000, 80_000_000_000, 250.0)
    assert dev.unsupported == [] and not dev.lost and not dev.mig
    (gp,) = last.processes
    assert (gp.pid, gp.gpu_uuid, gp.sm_util, gp.mem_used) == (miner, "GPU-fake-0", 95.0, 3e9)
    assert last.procs[miner].cmdline[-1].endswith("t-rex-gpu.py")  # resolved from /proc
    assert [(s.ok, s.reason) for s in states(events)] == [(True, "")]
    fake = collector.backend
    assert isinstance(fake, FakeBackend)
    # lastSeenTimeStamp carried forward: each call asks from the newest sample seen
    for (_, newest), (asked, _) in zip(fake.since, fake.since[1:], strict=False):
        assert asked == newest


async def test_nvml_failures_mid_run_are_stated_not_retried(tmp_path) -> None:
    reading = {"util_sm": 50, "power_w": 100, "temp_c": 50, "sm_clock_mhz": 1500}
    script = {
        "devices": [{"uuid": "GPU-fake-0"}, {"uuid": "GPU-fake-1"}],
        "steps": [{"devices": [reading, reading]}],
        "failures": [
            {"at": 2, "device": 0, "metric": "power", "error": "not_supported"},
            {"at": 3, "device": 1, "error": "lost"},
            {"at": 5, "device": 0, "metric": "utilization", "error": "hang", "seconds": 1.0},
            {"at": 7, "device": 0, "metric": "temperature", "error": "error"},
        ],
    }
    timeouts = metrics.collector_success.labels("gpu", "timeout")._value.get()
    skipped = metrics.collector_success.labels("gpu", "skipped")._value.get()
    errors = metrics.errors.labels("collector.gpu")._value.get()
    collector, events = await run_collector(
        gpu_config(tmp_path, script), lambda ev: len(samples(ev)) >= 10
    )
    fake = collector.backend
    assert isinstance(fake, FakeBackend)
    got = samples(events)
    # pass 0 discovers the devices; pass n >= 1 is sample n - 1 up to the hung pass 5,
    # which gives no sample, so pass n >= 6 is sample n - 2
    assert got[0].devices[0].power_w == 100.0
    assert all(s.devices[0].power_w is None for s in got[1:])
    assert got[-1].devices[0].unsupported == ["power"]
    assert not [c for c in fake.calls if c[1:] == ("power", 0) and c[0] > 2]  # not asked again
    assert not got[1].devices[1].lost and all(s.devices[1].lost for s in got[2:])
    assert not [c for c in fake.calls if c[2] == 1 and c[0] > 3]  # a lost GPU is left alone
    # the hung pass timed out once, and no pass was queued behind it while it hung
    assert metrics.collector_success.labels("gpu", "timeout")._value.get() == timeouts + 1
    assert metrics.collector_success.labels("gpu", "skipped")._value.get() > skipped
    started = max(p for p, metric, _ in fake.calls if metric == "count")
    assert len(got) in (started - 1, started - 2)  # the last may still be in flight
    temps = [s.devices[0].temp_c for s in got]
    assert temps[5] is None and temps.count(None) == 1  # a transient error costs one reading
    assert metrics.errors.labels("collector.gpu")._value.get() == errors + 1
    reasons = [(s.ok, s.reason, s.detail.get("severity")) for s in states(events)]
    assert reasons[0] == (True, "", None)
    assert (False, "GPU 0 (GPU-fake-0): not supported: power", "info") in reasons
    assert any("hung" in r and sev == "low" for _, r, sev in reasons)
    final = reasons[-1]
    assert final[1].startswith("GPU 0 (GPU-fake-0): not supported: power; GPU 1 (GPU-fake-1) lost")
    assert final[2] == "low"


async def test_mig_device_has_no_per_process_utilisation(tmp_path, procs) -> None:
    job = idle_process(procs, tmp_path, "job.py")
    script = {
        "devices": [{"uuid": "MIG-parent-0", "mig": True}],
        "steps": [{"devices": [{"util_sm": 60}], "processes": [{"pid": job, "mem_used": 2e9}]}],
    }
    collector, events = await run_collector(
        gpu_config(tmp_path, script), lambda ev: len(samples(ev)) >= 3
    )
    last = samples(events)[-1]
    assert last.devices[0].mig and last.processes[0].sm_util is None
    assert last.processes[0].mem_used == 2_000_000_000
    fake = collector.backend
    assert isinstance(fake, FakeBackend)
    assert not [c for c in fake.calls if c[1] == "process_utilization"]
    (state,) = states(events)
    assert state.reason == "GPU 0 (MIG-parent-0): MIG mode, no per-process utilisation"


async def test_no_driver_reports_once_and_stays_off(tmp_path) -> None:
    script = {"init_error": "Driver Not Loaded", "devices": [{"uuid": "GPU-x"}]}
    _, events = await run_collector(gpu_config(tmp_path, script), lambda ev: False)
    assert [(s.ok, s.reason, s.detail) for s in states(events)] == [
        (False, "NVML unavailable: Driver Not Loaded", {"severity": "info"})
    ]
    assert samples(events) == []


async def test_real_nvml_backend(tmp_path) -> None:
    """On this machine (no GPU): the 'no library or driver' path; on a GPU box: real samples."""
    try:
        probe = NvmlBackend()
        probe.init()
        probe.shutdown()
    except GpuUnavailable:
        _, events = await run_collector(gpu_config(tmp_path, None), lambda ev: False)
        (state,) = states(events)
        assert not state.ok and state.reason.startswith("NVML unavailable: ")
        assert state.detail == {"severity": "info"}
        return
    _, events = await run_collector(gpu_config(tmp_path, None), lambda ev: bool(samples(ev)))
    dev = samples(events)[0].devices[0]
    assert dev.uuid and (dev.util_sm is not None or "utilization" in dev.unsupported)


class Recorder(Sink):
    type = "recorder"

    def __init__(self) -> None:  # not built from config
        self.name, self.min_severity = "recorder", Severity.INFO
        self.got: list[Finding] = []

    def submit(self, finding: Finding) -> None:
        self.got.append(finding)


async def run_engine(
    cfg: config.Config, monkeypatch, until: Callable[[list[Finding]], bool], settle: float = 0.0
) -> list[Finding]:
    monkeypatch.setattr(collectors, "load_all", lambda: {"gpu": GpuCollector})
    monkeypatch.setattr(detectors, "load_all", lambda: {"load": LoadDetector})
    engine = Engine(cfg)
    rec = Recorder()
    engine.sinks.append(rec)
    task = asyncio.create_task(engine.run())
    deadline = time.monotonic() + 15
    try:
        while not until(rec.got):
            assert time.monotonic() < deadline, [f.summary for f in rec.got]
            assert not task.done()
            await asyncio.sleep(0.02)
        await asyncio.sleep(settle)
    finally:
        engine.stop()
        assert await asyncio.wait_for(task, 15) == 0  # a bound, not a speed: CI is loaded
    return rec.got


JOB = {"exe": os.path.realpath(sys.executable), "user": pwd.getpwuid(os.getuid()).pw_name}
AGENT = """
[agent]
state_dir = '{tmp}'
[log]
stdout = false
[metrics]
enabled = false
[load]
sustain = 1.0
grace = 0.3
[[runbook.jobs]]
name = "training"
exe = "{exe}"
user = "{user}"
cmdline = '.*train\\.py'
"""


async def test_gpu_only_miner_caught_training_job_explained(
    tmp_path, detached, monkeypatch
) -> None:
    miner = detached_idle(detached, tmp_path, "t-rex-gpu.py")  # GPU load only, no CPU at all
    trainer = detached_idle(detached, tmp_path, "train.py")
    script = {
        "devices": [{"uuid": "GPU-fake-0"}, {"uuid": "GPU-fake-1"}, {"uuid": "GPU-fake-2"}],
        "steps": [
            {
                "devices": [
                    {"util_sm": 97, "power_w": 250},
                    {"util_sm": 99, "power_w": 300},
                    {"util_sm": 90, "power_w": 200},  # busy, and no process to show for it
                ],
                "processes": [
                    {"device": 0, "pid": miner, "sm_util": 95, "mem_used": 3e9},
                    {"device": 1, "pid": trainer, "sm_util": 99, "mem_used": 4e10},
                ],
            }
        ],
    }
    cfg = gpu_config(tmp_path, script, AGENT.format(tmp=tmp_path, **JOB))
    rules = {"gpu.process", "gpu.device_util"}
    got = await run_engine(cfg, monkeypatch, lambda g: rules <= {f.rule for f in g}, settle=0.5)
    by_rule = {f.rule: f for f in got}
    assert sorted(f.rule for f in got) == ["gpu.device_util", "gpu.process"]
    proc_finding = by_rule["gpu.process"]
    assert proc_finding.process.pid == miner and str(proc_finding.category) == "gpu"
    assert proc_finding.evidence["unit"] == "% SM" and proc_finding.evidence["history"]
    comm = Path(f"/proc/{miner}/comm").read_text().strip()  # python or python3 (venv)
    assert proc_finding.evidence["tree"]["top"] == [{"pid": miner, "name": comm, "share": 1.0}]
    device = by_rule["gpu.device_util"]
    assert device.subject == "gpu:GPU-fake-2:util" and device.process is None
    assert device.evidence["processes"] == []
    assert all(f.process is None or f.process.pid != trainer for f in got)


async def test_engine_states_gpu_trouble_with_severity(tmp_path, monkeypatch) -> None:
    script = {"init_error": "NVML Shared Library Not Found"}
    cfg = gpu_config(tmp_path, script, AGENT.format(tmp=tmp_path, **JOB))
    (info,) = await run_engine(cfg, monkeypatch, lambda g: bool(g))
    assert (info.rule, info.severity) == ("integrity.collector_off", Severity.INFO)
    assert info.evidence["reason"] == "NVML unavailable: NVML Shared Library Not Found"

    script = {
        "devices": [{"uuid": "GPU-fake-0"}],
        "steps": [{"devices": [{"util_sm": 1}]}],
        "failures": [{"at": 2, "device": 0, "error": "lost"}],
    }
    # a fresh state dir: the same one again would be a restart (integrity.agent_restarted)
    cfg = gpu_config(tmp_path, script, AGENT.format(tmp=tmp_path / "second", **JOB))
    (lost,) = await run_engine(cfg, monkeypatch, lambda g: bool(g), settle=0.3)
    assert lost.severity == Severity.LOW
    assert lost.summary.startswith("collector gpu degraded: GPU 0 (GPU-fake-0) lost: fake lost")


def test_bad_fake_script_is_a_config_error(tmp_path) -> None:
    bad = tmp_path / "gpu.json"
    bad.write_text("{not json")
    cfg = config.parse(f"[gpu]\nbackend = 'fake'\nscript = '{bad}'\n")
    with pytest.raises(config.ConfigError, match="not a JSON script"):
        GpuCollector(Context(cfg, intel.load()), lambda ev: None)
    cfg = config.parse("[gpu]\nbackend = 'cuda'\n")
    with pytest.raises(config.ConfigError, match=r"unknown gpu\.backend 'cuda'"):
        GpuCollector(Context(cfg, intel.load()), lambda ev: None)


async def test_a_stop_that_meets_a_finished_nvml_call_still_stops(tmp_path) -> None:
    """The cancel lands after the NVML thread finished but before the collector resumed:
    asyncio.wait_for in 3.11 returns the result and drops such a cancel (gh-86296)."""
    cfg = gpu_config(tmp_path, {"devices": [{"uuid": "GPU-fake-0"}]})
    collector = GpuCollector(Context(cfg, intel.load()), lambda ev: None)
    collector._executor = ThreadPoolExecutor(max_workers=1)
    try:
        for steps in range(8):  # the cancel after 0..7 loop steps of the result's callbacks
            task = asyncio.create_task(collector._blocking(lambda: 1))
            await asyncio.sleep(0)  # the call is submitted
            collector._busy.result(timeout=5)  # and finished
            for _ in range(steps):
                await asyncio.sleep(0)
            if task.done():
                break
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert task.cancelled(), "the stop was swallowed: the collector would run on"
    finally:
        collector._executor.shutdown()
