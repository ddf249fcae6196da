"""The agent as a service: /metrics and /healthz, sd_notify, the unit file, the example config."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import typing
import uuid
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from receiver import Receiver
from sinkkit import cfg_for, miner, table

from sentinel import collectors, detectors
from sentinel.core import config
from sentinel.core.events import GpuDevice, GpuSample
from sentinel.engine import Engine
from sentinel.ops.sd_notify import Notifier, watchdog_interval

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "sentinel.service"
EXAMPLE = ROOT / "systemd" / "sentinel.toml"


class Gate(collectors.Collector):
    """Reports ok when `up` is set and degraded when `down` is set."""

    name = "gate"
    up: asyncio.Event
    down: asyncio.Event

    async def run(self) -> None:
        await Gate.up.wait()
        self.report(True)
        await Gate.down.wait()
        self.report(False, "netlink gone")
        await asyncio.Event().wait()


@pytest.fixture
def gated(monkeypatch):
    Gate.up, Gate.down = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(collectors, "load_all", lambda: {Gate.name: Gate})
    monkeypatch.setattr(detectors, "load_all", lambda: {})
    return Gate


async def wait_until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_and_healthz(tmp_path, gated) -> None:
    rx = await Receiver().start()
    engine = Engine(cfg_for(tmp_path, table("webhook", rx.url(), "hook")))
    task = asyncio.create_task(engine.run())
    try:
        await wait_until(lambda: getattr(engine, "http", None) and engine.http.server)
        base = f"http://127.0.0.1:{engine.http.port}"
        token = (tmp_path / "metrics.token").read_text().strip()
        assert (tmp_path / "metrics.token").stat().st_mode & 0o777 == 0o600
        for wrong in (None, "x" * 43, token[:-1]):
            assert (await get(f"{base}/healthz", wrong))[0] == 401
            assert (await get(f"{base}/metrics", wrong))[0] == 401
        status, _, text = await get(f"{base}/healthz", token)
        assert (status, text) == (503, "starting: waiting for gate\n")

        gated.up.set()
        await asyncio.wait_for(engine.ready.wait(), 5)
        assert await get(f"{base}/healthz", token) == (200, "text/plain; charset=utf-8", "ok\n")

        engine.publish(miner(1))
        engine.emit(
            GpuSample(
                time=time.time(),
                devices=[GpuDevice(0, "GPU-fake-0", "Fake GPU", util_sm=42.0, mem_used=1 << 30)],
                processes=[],
            )
        )
        await rx.wait_for(lambda: len(rx.requests) == 1)
        await wait_until(lambda: not engine.sinks[-1].spool.entries)
        status, ctype, text = await get(f"{base}/metrics", token)
        assert status == 200 and ctype.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values()
            for s in f.samples
        }
        for name in (
            "sentinel_findings",
            "sentinel_sink_deliveries",
            "sentinel_sink_failures",
            "sentinel_sink_spool_depth",
            "sentinel_sink_spool_dropped",
            "sentinel_collector_up",
            "sentinel_collector_duration_seconds",
            "sentinel_collector_runs",
            "sentinel_detector_duration_seconds",
            "sentinel_events_dropped",
            "sentinel_process_cpu_seconds",
            "sentinel_process_resident_memory_bytes",
            "sentinel_gpu_utilization_percent",
            "sentinel_gpu_memory_used_bytes",
        ):
            assert name in families, name
        assert samples[("sentinel_sink_deliveries_total", (("sink", "hook"),))] >= 1
        assert samples[("sentinel_sink_spool_depth", (("sink", "hook"),))] == 0
        assert samples[("sentinel_findings_total", (("category", "miner"), ("severity", "high")))]
        assert samples[("sentinel_collector_up", (("collector", "gate"),))] == 1
        assert samples[("sentinel_gpu_utilization_percent", (("uuid", "GPU-fake-0"),))] == 42
        assert ("sentinel_gpu_power_watts", (("uuid", "GPU-fake-0"),)) not in samples  # unknown
        assert samples[("sentinel_process_resident_memory_bytes", ())] > 1 << 20
        assert samples[("sentinel_process_cpu_seconds_total", ())] > 0

        gated.down.set()
        await wait_until(lambda: not engine.health()[0])
        assert await get(f"{base}/healthz", token) == (
            503,
            "text/plain; charset=utf-8",
            "gate: netlink gone\n",
        )
    finally:
        engine.stop()
        assert await asyncio.wait_for(task, 10) == 0
        await rx.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"{base}/healthz", token)  # closed with the engine


async def test_metrics_without_auth_only_by_choice_and_on_a_0600_socket(tmp_path, gated) -> None:
    sock_path = tmp_path / "metrics.sock"
    for how in ("none", "unix"):
        cfg = cfg_for(tmp_path)
        if how == "none":
            cfg.metrics.auth = "none"
        else:
            cfg.metrics.unix_socket = str(sock_path)
        engine = Engine(cfg)
        task = asyncio.create_task(engine.run())
        try:
            gated.up.set()
            await asyncio.wait_for(engine.ready.wait(), 5)
            if how == "none":
                url = f"http://127.0.0.1:{engine.http.port}/healthz"
                assert (await get(url))[0] == 200
            else:
                assert sock_path.stat().st_mode & 0o777 == 0o600
                conn = aiohttp.UnixConnector(path=str(sock_path))
                async with (
                    aiohttp.ClientSession(connector=conn) as http,
                    http.get("http://localhost/healthz") as resp,
                ):
                    assert resp.status == 200
        finally:
            engine.stop()
            assert await asyncio.wait_for(task, 10) == 0
    assert not sock_path.exists()
    with pytest.raises(config.ConfigError, match=r"metrics\.auth"):
        config.parse("[metrics]\nauth = 'basic'\n", "t.toml")


async def test_metrics_port_in_use_is_not_fatal(tmp_path, gated, caplog) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = cfg_for(tmp_path)
        cfg.metrics.listen = f"127.0.0.1:{port}"
        engine = Engine(cfg)
        task = asyncio.create_task(engine.run())
        gated.up.set()
        await asyncio.wait_for(engine.ready.wait(), 5)
        engine.stop()
        assert await asyncio.wait_for(task, 10) == 0
    assert "metrics endpoint off" in caplog.text


def test_metrics_listen_is_validated() -> None:
    from sentinel.core.config import parse_listen

    assert parse_listen("127.0.0.1:9812") == ("127.0.0.1", 9812)
    assert parse_listen("[::1]:9812") == ("::1", 9812)
    assert parse_listen(":9812") == ("0.0.0.0", 9812)
    for bad in ("9812", "localhost", "127.0.0.1:99999", "[::1]9812"):
        with pytest.raises(config.ConfigError, match=r"metrics\.listen"):
            parse_listen(bad)


async def test_sd_notify_ready_watchdog_stopping(tmp_path, gated, monkeypatch) -> None:
    name = f"sentinel-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)  # abstract, as systemd's own $NOTIFY_SOCKET may be
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    got: list[tuple[float, str]] = []

    async def listen() -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 4096)
            got.extend((time.monotonic(), line) for line in data.decode().splitlines())

    reader = asyncio.create_task(listen())
    engine = Engine(cfg_for(tmp_path))
    task = asyncio.create_task(engine.run())
    try:
        await wait_until(lambda: sum(m == "WATCHDOG=1" for _, m in got) >= 3)
        assert not any(m == "READY=1" for _, m in got)  # a collector has not reported yet
        gated.up.set()
        await wait_until(lambda: any(m == "READY=1" for _, m in got))
        assert "STATUS=watching" in [m for _, m in got]
        # a stalled loop stops the pings: systemd would kill and restart the agent
        await asyncio.sleep(0.3)
        time.sleep(0.6)
        stall_end = time.monotonic()
        await wait_until(lambda: got[-1][0] > stall_end)
        pings = [t for t, m in got if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) >= 0.55  # nothing was sent while the loop was blocked
        assert sorted(gaps)[len(gaps) // 2] < 0.2  # otherwise every ~50 ms
        gated.down.set()
        await wait_until(lambda: "STATUS=degraded: gate: netlink gone" in [m for _, m in got])
        engine.stop()
        assert await asyncio.wait_for(task, 10) == 0
        await wait_until(lambda: got[-1][1] == "STOPPING=1")
    finally:
        engine.stop()
        reader.cancel()
        sock.close()


def test_notify_path_socket_and_watchdog_env(tmp_path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert Notifier(str(path)).notify("READY=1", "STATUS=x")
        assert sock.recv(100) == b"READY=1\nSTATUS=x"
    assert not Notifier(None).notify("READY=1")
    assert not Notifier(str(tmp_path / "missing")).notify("READY=1")
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None and watchdog_interval({}) is None


# the unit file

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze not installed")


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@needs_systemd
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_unit_verifies(tmp_path) -> None:
    """`systemd-analyze verify` on the file as shipped; ExecStart's /opt/sentinel/bin/sentinel
    is provided inside a private mount namespace, pointing at this checkout's CLI."""
    launcher = tmp_path / "sentinel"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m sentinel.cli "$@"\n')
    launcher.chmod(0o755)
    script = (
        "mount -t tmpfs tmpfs /opt && mkdir -p /opt/sentinel/bin && "
        f"ln -s {launcher} /opt/sentinel/bin/sentinel && "
        f"exec {SYSTEMD_ANALYZE} verify {UNIT}"
    )
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


def exposure(unit: Path) -> float:
    """`systemd-analyze security --offline` score of a unit file."""
    res = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for sentinel\.service: (\d+\.\d+)", res.stdout)
    assert m, res.stdout + res.stderr
    return float(m.group(1))


@needs_systemd
def test_unit_security_exposure_at_most_4() -> None:
    assert exposure(UNIT) <= 4.0


def test_unit_keeps_what_a_monitor_needs() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["always"] and s["RestartPreventExitStatus"] == ["78"]
    assert s["ExecStart"] == ["/opt/sentinel/bin/sentinel agent"]
    assert s["StateDirectory"] == ["sentinel"] and s["ConfigurationDirectory"] == ["sentinel"]
    assert s["UMask"] == ["0077"] and "WatchdogSec" in s
    assert "CPUQuota" in s and "MemoryMax" in s
    assert s.get("PrivateTmp", ["no"]) == ["no"]  # the real /tmp
    assert s.get("ProtectProc", ["default"]) == ["default"]  # every process's /proc
    assert s.get("ProcSubset", ["all"]) == ["all"] and "PrivatePIDs" not in s
    assert s.get("PrivateDevices", ["no"]) == ["no"] and "char-nvidia* rw" in s["DeviceAllow"]
    assert s["DevicePolicy"] == ["closed"]
    families = s["RestrictAddressFamilies"][0].split()
    assert families == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"]
    caps = set(s["CapabilityBoundingSet"][0].split())
    assert caps == {
        "CAP_NET_ADMIN",
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
        "CAP_NET_RAW",  # AF_PACKET for the traffic collector
    }
    assert "fanotify_init" in s["SystemCallFilter"][0]  # @privileged, not in @system-service


RESPONSE_DROPIN = ROOT / "systemd" / "sentinel-response.conf"


@needs_systemd
def test_unit_with_the_response_dropin_stays_at_most_4(tmp_path: Path) -> None:
    """The drop-in for an enabled [response] adds signals, cgroup and quarantine writes only."""
    extra = RESPONSE_DROPIN.read_text().split("[Service]\n", 1)[1]
    settings = [ln.split("=", 1)[0] for ln in extra.splitlines() if ln and ln[0] not in "#;"]
    assert settings == ["CapabilityBoundingSet", "ProtectControlGroups", "ReadWritePaths"]
    assert "CapabilityBoundingSet=CAP_KILL CAP_DAC_OVERRIDE CAP_FOWNER\n" in extra
    merged = tmp_path / "sentinel.service"
    merged.write_text(UNIT.read_text().replace("[Install]", extra + "\n[Install]"))
    assert exposure(merged) <= 4.0


# the example configuration


def uncommented(text: str) -> str:
    """The example with every `# ` line switched on (`##` lines are explanations)."""
    return "\n".join(line[2:] if line.startswith("# ") else line for line in text.splitlines())


def keys_of(cls: typing.Any, prefix: str = "") -> set[str]:
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        tp = hints[f.name]
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out |= keys_of(typing.get_args(tp)[0], f"{prefix}{f.name}[].")
        elif dataclasses.is_dataclass(tp):
            out |= keys_of(tp, f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def keys_in(data: typing.Any, prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("headers", "exceptions"):  # dict-valued keys
            out |= keys_in(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                out |= keys_in(item, f"{prefix}{key}[].")
        else:
            out.add(prefix + key)
    return out


# example values that are illustrations rather than the (empty or host-dependent) default
ILLUSTRATIONS = {
    "agent.state_dir",
    "scan.rules",
    "canaries.paths",
    "daemons.allow",
    "rules.dirs",
    "rules.disable",
    "rules.exceptions",
    "network.egress_allow",  # unset by default: TOML cannot write the default (off)
} | {f"response.{key}" for key in ("scope", "admin_users", "on_contain", "rules")}


def test_example_config_lists_every_key_with_its_default() -> None:
    text = EXAMPLE.read_text()
    assert config.parse(text, str(EXAMPLE)).sinks == []  # as shipped: all defaults
    full = uncommented(text)
    cfg = config.parse(full, str(EXAMPLE))  # every example value is valid
    data = tomllib.loads(full)
    missing = keys_of(config.Config) - keys_in(data)
    assert not missing, f"keys not in {EXAMPLE.name}: {sorted(missing)}"
    defaults = config.Config()
    for section, table_ in data.items():
        if not isinstance(table_, dict) or section == "runbook":
            continue
        for key in table_:
            if f"{section}.{key}" not in ILLUSTRATIONS:
                got, want = (
                    getattr(getattr(cfg, section), key),
                    getattr(getattr(defaults, section), key),
                )
                assert got == want, f"{section}.{key}: example {got!r}, default {want!r}"
    full_sink, plain = cfg.sinks[0], config.SinkConfig()
    for f in dataclasses.fields(config.SinkConfig):
        if f.name not in ("type", "name", "url", "secret", "headers"):
            assert getattr(full_sink, f.name) == getattr(plain, f.name), f.name
